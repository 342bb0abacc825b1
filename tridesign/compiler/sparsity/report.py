"""What a pruning pass did, per weight: the record the annotations, the CLI and the tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tridesign.annotations import WeightSparsity, encode_mask
from tridesign.compiler.sparsity.prune_fns import floor_count
from tridesign.errors import UsageError
from tridesign.sparsity_plan import DEFAULT_MIN_DENSITY


@dataclass
class LayerRecord:
    """One pruned weight. `mask` has the weight's current shape; `density` is relative to the
    original dense weight (channel pruning shrinks the shape, so it can be < 1 with an all-True mask)."""

    name: str
    method: str
    pattern: str
    original_shape: tuple[int, ...]
    mask: np.ndarray
    values: np.ndarray  # the pruned weight as it is now, used to find it again after export
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def density(self) -> float:
        return float(self.mask.sum()) / float(np.prod(self.original_shape))

    def weight_sparsity(self, shape: tuple[int, ...] | None = None, transposed: bool = False) -> WeightSparsity:
        """The annotation record, for an initializer of `shape` (transposed when it stores W^T)."""
        mask = self.mask.T if transposed else self.mask
        shape = tuple(shape or mask.shape)
        shrunk = self.original_shape != self.shape
        return WeightSparsity(
            method=self.method,
            pattern=self.pattern,
            density=round(float(mask.mean()), 6),  # of the tensor as stored, as the kernels read it
            shape=shape,
            mask=None if bool(mask.all()) else encode_mask(mask.reshape(shape)),
            original_shape=(self.original_shape[::-1] if transposed else self.original_shape) if shrunk else None,
        )


@dataclass
class PruneReport:
    """All records of one pruning run, with the totals users ask for first: the real sparsity and
    the sparsest and densest layer, since a total hides a layer pruned to (almost) nothing."""

    spec: str
    records: dict[str, LayerRecord] = field(default_factory=dict)
    nominal_sparsity: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    min_density: float = 0.0  # the plan's per-layer floor (SparsityPlan.min_density)

    @property
    def dense_weights(self) -> int:
        return int(sum(np.prod(r.original_shape) for r in self.records.values()))

    @property
    def kept_weights(self) -> int:
        return int(sum(r.mask.sum() for r in self.records.values()))

    @property
    def real_sparsity(self) -> float:
        """Fraction of the prunable weights that are gone (zeroed or physically removed)."""
        dense = self.dense_weights
        return 1.0 - self.kept_weights / dense if dense else 0.0

    def density_extremes(self) -> tuple[LayerRecord, LayerRecord] | None:
        """The layers keeping the smallest and the largest fraction of their weights (first on ties)."""
        if not self.records:
            return None
        records = list(self.records.values())
        return min(records, key=lambda r: r.density), max(records, key=lambda r: r.density)

    def at_min_density(self) -> list[str]:
        """Layers keeping no more than the floor: the ones it protected (or a per-layer spec asking
        for less), or, for torch channel pruning, which the floor does not cap, layers below it."""
        if self.min_density <= 0:
            return []
        return [
            name for name, r in self.records.items()
            if (size := int(np.prod(r.original_shape))) > floor_count(size, self.min_density) >= int(r.mask.sum())
        ]

    def refuse_empty_layers(self) -> None:
        """A layer with no weights left computes a constant: whatever reaches it is cut off (the
        whole output, on a path without a shortcut), yet the totals, a verification against the
        same pruned graph and the timings all look fine. One line naming the layer, and what to do
        instead."""
        empty = [name for name, r in self.records.items() if r.density == 0.0]
        if empty:
            more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
            raise UsageError(
                f"pruning {self.spec} leaves layer {empty[0]}{more} with no weights (it outputs a constant, "
                f"whatever its input); rank per layer (e.g. unstructured:S:layer) or keep a per-layer floor "
                f"(--min-density, default {DEFAULT_MIN_DENSITY})"
            )

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary for manifests and `--json` output."""
        extremes = self.density_extremes()
        return {
            "spec": self.spec,
            "nominal_sparsity": round(self.nominal_sparsity, 6),
            "real_sparsity": round(self.real_sparsity, 6),
            "dense_weights": self.dense_weights,
            "kept_weights": self.kept_weights,
            "min_density": self.min_density,
            "density_min": {"layer": extremes[0].name, "density": round(extremes[0].density, 6)} if extremes else None,
            "density_max": {"layer": extremes[1].name, "density": round(extremes[1].density, 6)} if extremes else None,
            "layers_at_min_density": self.at_min_density(),
            "layers": {
                name: {
                    "method": r.method,
                    "pattern": r.pattern,
                    "density": round(r.density, 6),
                    "shape": list(r.shape),
                    "original_shape": list(r.original_shape),
                    **r.extra,
                }
                for name, r in self.records.items()
            },
            **self.extra,
        }
