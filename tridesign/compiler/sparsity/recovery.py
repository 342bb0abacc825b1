"""Recovery after pruning: a short first-order finetune with the data the model's task provides.

Only models whose task ships real data can be recovered: ResNet-20 trains on scikit-learn's digits
(`tridesign.models.digits`), the tracker's detector on synthetic video frames
(`tridesign.models.video_training`). Pruned weights are exactly zero after any pass, so the masks are read
back from the weights (`weight != 0`) and re-applied after every optimizer step: recovery never
revives a pruned weight, and channel-pruned models simply train at their smaller shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tridesign.compiler.sparsity.channel import prunable_modules
from tridesign.errors import UsageError

if TYPE_CHECKING:
    import torch

# model name -> task data module; each has train_steps(model, steps, lr, masks=...) and evaluate(model),
# and may set RECOVERY_LR where its optimizer needs another rate (Adam for the detector).
TASK_DATA = {
    "resnet20": "tridesign.models.digits",
    "resnet20_digits": "tridesign.models.digits",
    "qdtrack_center": "tridesign.models.video_training",
}
RECOVERY_LR = 0.01


def sparse_masks(model: "torch.nn.Module") -> dict[str, "torch.Tensor"]:
    """`weight != 0` for every prunable weight that holds zeros (dense weights need no mask)."""
    masks = {}
    for name, module in prunable_modules(model).items():
        mask = (module.weight.detach() != 0).to(module.weight.dtype)
        if not bool(mask.all()):
            masks[f"{name}.weight"] = mask
    return masks


def recover_torch(model: "torch.nn.Module", model_name: str, steps: int) -> dict[str, Any]:
    """Finetune `model` in place for `steps` mini-batches; returns losses and accuracy before/after."""
    import importlib

    if steps < 0:
        raise UsageError(f"--finetune-steps must be >= 0, got {steps}")
    if model_name not in TASK_DATA:
        known = ", ".join(sorted(TASK_DATA))
        raise UsageError(f"--finetune-steps needs task data; model {model_name!r} has none (models with data: {known})")
    task = importlib.import_module(TASK_DATA[model_name])
    before = task.evaluate(model)
    lr = getattr(task, "RECOVERY_LR", RECOVERY_LR)
    losses = task.train_steps(model, steps, lr=lr, masks=sparse_masks(model)) if steps else []
    return {
        "steps": steps,
        "data": TASK_DATA[model_name].rsplit(".", 1)[-1],
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "accuracy_before": before,
        "accuracy_after": task.evaluate(model),
    }
