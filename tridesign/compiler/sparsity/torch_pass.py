"""Pruning a torch model in place, before export: `prune_torch`, the compile pipeline's entry.

Mask methods zero weights (the model keeps its shapes, so the exported graph is the dense graph
with zeros the sparse kernels and the simulator can skip); channel pruning shrinks the model.
Pruned weights stay exactly zero, which is how `recover_torch` finds the masks again and how
`annotate_exported` recognises the weights after BatchNorm folding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tridesign.compiler.sparsity.apply import Weight, compute_records, nominal
from tridesign.compiler.sparsity.channel import prune_channels, prunable_modules
from tridesign.compiler.sparsity.report import PruneReport
from tridesign.sparsity_plan import Channel, SparsityPlan

if TYPE_CHECKING:
    import torch


def torch_inputs(example_inputs: dict[str, np.ndarray]) -> tuple["torch.Tensor", ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in example_inputs.values())


def prune_torch(model: "torch.nn.Module", plan: SparsityPlan, example_inputs: dict[str, np.ndarray]) -> PruneReport:
    """Prune `model` in place as `plan` says; records are keyed by parameter name.

    Layer names in a YAML plan are module names (``layer1.0.conv1``). ZO-GraSP scores with a
    self-labelled cross-entropy on `example_inputs` (the model's own dense predictions), since a
    generic model brings no labels; `zograsp.zo_scores_torch` takes real labels when there are some.
    """
    import torch

    example = torch_inputs(example_inputs)
    if any(isinstance(m, Channel) for m in plan.methods()):
        records = prune_channels(model, plan, example)
        report = PruneReport(spec=str(plan), records=records, min_density=plan.min_density)
        report.nominal_sparsity = nominal(plan, {n[: -len(".weight")]: r for n, r in records.items()})
        report.refuse_empty_layers()
        return report
    modules = prunable_modules(model)
    weights = {name: Weight(m.weight.detach().cpu().numpy().copy()) for name, m in modules.items()}

    def zo_scores(names: list[str]) -> dict[str, np.ndarray]:
        from tridesign.compiler.sparsity.zograsp import self_labelled, zo_scores_torch

        return zo_scores_torch(model, {n: modules[n] for n in names}, *self_labelled(model, example))

    layer_records = compute_records(weights, plan, zo_scores)
    report = PruneReport(spec=str(plan), nominal_sparsity=nominal(plan, layer_records), min_density=plan.min_density)
    for name, rec in layer_records.items():
        rec.name = f"{name}.weight"
        report.records[rec.name] = rec
    report.refuse_empty_layers()  # before the model is touched
    with torch.no_grad():
        for name, rec in layer_records.items():
            param = modules[name].weight
            param.mul_(torch.from_numpy(rec.mask).to(param.dtype))
    return report
