"""A trained ResNet-20 on real data: scikit-learn's bundled digits, upsampled to 32x32.

No pretrained weights can be downloaded here, yet pruning, quantization and ZO finetuning all need
an accuracy that means something. The 1,797 bundled 8x8 digit images are the one real labelled
image set every installation has; bilinearly upsampled to 32x32 and repeated over **3 channels**
they fit the registered CIFAR-shaped `resnet20` unchanged (same input name, shape and width), so
every tool that takes `resnet20` takes the trained model too.

The data side lives in tridesign.data.digits (numpy + scipy only: the device side, which has no
torch, evaluates and finetunes on the same arrays); torch is imported inside the functions that
build and train the model.
Trained weights are cached in ``$XDG_CACHE_HOME/tridesign`` (or ``~/.cache/tridesign``) and
trained on first use, so the first call takes about a minute on 2 cores and later calls load.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tridesign.data.digits import IN_CHANNELS, NUM_CLASSES, calibration_set, digits_inputs, load_digits_split
from tridesign.models.deepzero import RESNET20, build_resnet20
from tridesign.models.registry import register
from tridesign.models.training import masked_step

if TYPE_CHECKING:
    import torch

# Bumped whenever the data preparation or the training recipe changes, so stale caches are ignored.
RECIPE_VERSION = 2


def cache_dir() -> Path:
    """Where trained weights live: ``$XDG_CACHE_HOME/tridesign`` or ``~/.cache/tridesign``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tridesign"


def weights_path(config: str = "tiny", seed: int = 0) -> Path:
    return cache_dir() / f"resnet20_digits_{config}_s{seed}_v{RECIPE_VERSION}.pt"


def _batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    order = rng.permutation(len(x))
    for i in range(0, len(x), size):
        sel = order[i : i + size]
        yield x[sel], y[sel]


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shifts of up to 2 pixels: cheap, and keeps the small net from memorising positions."""
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(-2, 3, size=(len(x), 2))):
        out[i] = np.roll(x[i], (int(dy), int(dx)), axis=(1, 2))
    return out


def train_steps(
    model: "torch.nn.Module",
    steps: int,
    lr: float = 0.01,
    batch: int = 64,
    seed: int = 0,
    masks: dict[str, "torch.Tensor"] | None = None,
) -> list[float]:
    """SGD with cosine decay for `steps` mini-batches of digits; returns the losses.

    `masks` (parameter name -> 0/1 tensor) are re-applied after every step, so pruned weights stay
    zero during recovery finetuning. Shared by the initial training and the sparsity recovery.
    """
    import torch
    import torch.nn.functional as F

    split = load_digits_split()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    params = dict(model.named_parameters())
    losses: list[float] = []
    model.train()
    while len(losses) < steps:
        for xb, yb in _batches(split.x_train, split.y_train, batch, rng):
            if len(losses) >= steps:
                break
            logits = model(torch.from_numpy(_augment(xb, rng)))
            losses.append(masked_step(opt, sched, F.cross_entropy(logits, torch.from_numpy(yb)), params, masks))
    model.eval()
    return losses


def evaluate(model: "torch.nn.Module", batch: int = 256) -> float:
    """Top-1 accuracy (0..1) of a torch model on the digits test split."""
    import torch

    split = load_digits_split()
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split.x_test), batch):
            pred = model(torch.from_numpy(split.x_test[i : i + batch])).argmax(1).numpy()
            correct += int((pred == split.y_test[i : i + batch]).sum())
    model.train(was_training)
    return correct / len(split.x_test)


def evaluate_logits_fn(predict, batch: int = 256) -> float:
    """Top-1 accuracy of any ``predict(x: np.ndarray) -> logits`` (an ORT session, a bundle runner)."""
    split = load_digits_split()
    correct = 0
    for i in range(0, len(split.x_test), batch):
        pred = np.asarray(predict(split.x_test[i : i + batch])).argmax(1)
        correct += int((pred == split.y_test[i : i + batch]).sum())
    return correct / len(split.x_test)


def train_resnet20_digits(
    config: str = "tiny", epochs: int = 15, seed: int = 0, batch: int = 64
) -> tuple["torch.nn.Module", float]:
    """Train ResNet-20 (`config` width) on digits from scratch; returns (model in eval mode, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    model = build_resnet20(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
    steps = epochs * -(-len(load_digits_split().x_train) // batch)
    train_steps(model, steps, lr=0.05, batch=batch, seed=seed)
    return model, evaluate(model)


def _save_atomic(state: dict, path: Path) -> None:
    import torch

    from tridesign.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save(state, handle)


def load_trained_resnet20(config: str = "tiny", seed: int = 0, retrain: bool = False) -> "torch.nn.Module":
    """The digits-trained ResNet-20 in eval mode: loaded from the cache, trained (and cached) on first use."""
    import torch

    path = weights_path(config, seed)
    if path.exists() and not retrain:
        model = build_resnet20(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        return model.eval()
    start = time.perf_counter()
    model, acc = train_resnet20_digits(config, seed=seed)
    meta = {"accuracy": acc, "seconds": time.perf_counter() - start, "recipe": RECIPE_VERSION}
    _save_atomic({"state_dict": model.state_dict(), "meta": meta}, path)
    return model


def cached_accuracy(config: str = "tiny", seed: int = 0) -> float | None:
    """Test accuracy recorded when the cached weights were trained (None when not trained yet)."""
    import torch

    path = weights_path(config, seed)
    if not path.exists():
        return None
    return float(torch.load(path, map_location="cpu", weights_only=True)["meta"]["accuracy"])


def _load_digits_weights(module: "torch.nn.Module", config: str) -> None:
    module.load_state_dict(load_trained_resnet20(config).state_dict())


def _digits_calibration(config: str, seed: int) -> list[dict[str, np.ndarray]]:
    return calibration_set(seed=seed)


# The same network as DeepZero's resnet20, with trained weights and real data: what accuracy work measures on.
register(
    replace(
        RESNET20,
        name="resnet20_digits",
        task="digit classification (scikit-learn digits upsampled to 32x32), trained weights",
        example_inputs=digits_inputs,
        published_source=f"same architecture as resnet20: {RESNET20.published_source}",
        weights=_load_digits_weights,
        calibration=_digits_calibration,
        notes={"accuracy": "≥ 95 % test accuracy on the held-out digits split (tridesign.models.digits)"},
    )
)
