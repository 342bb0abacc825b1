"""What a pruning pass did, per weight: the record the annotations, the CLI and the tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tridesign.annotations import WeightSparsity, encode_mask


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
    """All records of one pruning run, with the totals users ask for first."""

    spec: str
    records: dict[str, LayerRecord] = field(default_factory=dict)
    nominal_sparsity: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

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

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary for manifests and `--json` output."""
        return {
            "spec": self.spec,
            "nominal_sparsity": round(self.nominal_sparsity, 6),
            "real_sparsity": round(self.real_sparsity, 6),
            "dense_weights": self.dense_weights,
            "kept_weights": self.kept_weights,
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
