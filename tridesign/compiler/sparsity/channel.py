"""Structured channel (filter) pruning that physically removes channels from a torch model.

Removing an output channel of a conv means removing the matching input channel of every consumer,
the matching BatchNorm entries, and -- across a residual add or a concat -- the same channel in
every tensor joined there; grouped and depthwise convs tie input and output channels together.
Torch-Pruning's dependency graph (Fang et al., CVPR'23) traces exactly these couplings, so we use it
instead of a second, weaker tracer: each coupled group is scored by its L1 filter norm
(`GroupMagnitudeImportance(p=1)`) and loses the requested fraction of its channels.

Layers that produce a model output (the classifier) keep their output channels -- removing a logit
would change what the model means -- and model inputs are never pruned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tridesign.compiler.sparsity.report import LayerRecord
from tridesign.sparsity_plan import Channel, SparsityPlan

if TYPE_CHECKING:
    import torch


def prunable_modules(model: "torch.nn.Module") -> dict[str, "torch.nn.Module"]:
    """Conv and linear layers by module name: the layers every pass prunes."""
    import torch.nn as nn

    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))}


def output_layers(model: "torch.nn.Module", example: tuple["torch.Tensor", ...]) -> list["torch.nn.Module"]:
    """Prunable layers whose output tensor is returned by the model (found with forward hooks)."""
    import torch

    produced: dict[int, "torch.nn.Module"] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: produced.__setitem__(id(out), mod))
             for m in prunable_modules(model).values()]
    try:
        with torch.no_grad():
            out = model(*example)
    finally:
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out.values() if isinstance(out, dict) else (out,))
    return [produced[id(t)] for t in outs if id(t) in produced]


def grouped_barriers(model: "torch.nn.Module", example: tuple["torch.Tensor", ...]) -> list["torch.nn.Module"]:
    """Layers to leave alone around grouped (not depthwise) convs.

    Torch-Pruning 1.6 indexes a grouped conv's input channels as if it were dense and fails (or
    silently breaks the grouping), so every layer coupled to a grouped conv's input channels is
    kept whole, together with the grouped conv itself. Depthwise convs prune correctly and are not
    affected. A model with grouped convs therefore loses less than the requested ratio; the report
    shows the real shapes.
    """
    import torch.nn as nn
    import torch_pruning as tp

    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels]
    if not grouped:
        return []
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    barriers = []
    for conv in grouped:
        barriers.append(conv)
        group = graph.get_pruning_group(conv, tp.prune_conv_in_channels, idxs=[0])
        barriers += [dep.target.module for dep, _ in group if isinstance(dep.target.module, (nn.Conv2d, nn.Linear))]
    return barriers


def prune_channels(
    model: "torch.nn.Module", plan: SparsityPlan, example: tuple["torch.Tensor", ...]
) -> dict[str, LayerRecord]:
    """Remove channels in place as the plan says; returns one record per layer whose shape changed."""
    import torch_pruning as tp

    modules = prunable_modules(model)
    before = {name: tuple(m.weight.shape) for name, m in modules.items()}
    ratios = {m: spec.sparsity for name, m in modules.items() if isinstance(spec := plan.for_layer(name), Channel)}
    ignored = output_layers(model, example) + [m for name, m in modules.items() if m not in ratios]
    ignored += grouped_barriers(model, example)
    was_training = model.training
    model.eval()
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=plan.default.sparsity if isinstance(plan.default, Channel) else 0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=ignored,
    )
    pruner.step()
    model.train(was_training)
    records = {}
    for name, m in modules.items():
        shape = tuple(m.weight.shape)
        if shape != before[name]:
            values = m.weight.detach().cpu().numpy().copy()
            records[f"{name}.weight"] = LayerRecord(
                name=f"{name}.weight",
                method="channel",
                pattern="channel",
                original_shape=before[name],
                mask=np.ones(shape, dtype=bool),
                values=values,
                extra={"channels_kept": [shape[0], before[name][0]], "inputs_kept": [shape[1], before[name][1]]},
            )
    return records
