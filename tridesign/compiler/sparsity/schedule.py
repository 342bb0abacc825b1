"""When to prune: one shot, or iteratively with recovery steps in between.

Iterative magnitude pruning (Han et al. 2015; Zhu & Gupta's gradual schedule) reaches high sparsity
with less accuracy loss than one shot: the sparsity rises over `rounds` in a cubic ramp
s_k = s * (1 - (1 - k/rounds)^3), and the model recovers for a few steps after each round. Masks
only ever grow (a weight pruned in round k stays pruned), because every round re-ranks the
surviving weights and the pruned ones are exactly zero.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tridesign.compiler.sparsity.recovery import recover_torch
from tridesign.compiler.sparsity.report import PruneReport
from tridesign.compiler.sparsity.torch_pass import prune_torch
from tridesign.errors import UsageError
from tridesign.sparsity_plan import DEFAULT_MIN_DENSITY, Block, Method, SparsityPlan, Unstructured

if TYPE_CHECKING:
    import torch


def cubic_ramp(final: float, rounds: int) -> list[float]:
    """Sparsity after each of `rounds` rounds, ending exactly at `final`."""
    return [final * (1.0 - (1.0 - k / rounds) ** 3) for k in range(1, rounds + 1)]


def prune_iterative(
    model: "torch.nn.Module",
    final: Method,
    example_inputs: dict[str, np.ndarray],
    model_name: str,
    rounds: int = 3,
    steps_per_round: int = 50,
    min_density: float = DEFAULT_MIN_DENSITY,
) -> tuple[PruneReport, list[dict[str, Any]]]:
    """Prune to an unstructured or block `final` in `rounds` rounds with recovery in between, every
    round held at the per-layer floor `min_density` (`SparsityPlan.min_density`)."""
    if not isinstance(final, (Unstructured, Block)) or rounds < 1:
        raise UsageError("iterative pruning takes an unstructured or block spec and at least one round")
    history = []
    report = None
    for sparsity in cubic_ramp(final.sparsity, rounds):
        report = prune_torch(model, SparsityPlan(replace(final, sparsity=sparsity), min_density=min_density), example_inputs)
        history.append({"sparsity": sparsity, **recover_torch(model, model_name, steps_per_round)})
    assert report is not None
    report.spec = str(SparsityPlan(final, min_density=min_density))
    return report, history
