"""Tri-design 3x3 pattern pruning: library, per-kernel rule, real sparsity reported."""

from __future__ import annotations

import numpy as np

from tridesign.compiler.sparsity import prune_torch
from tridesign.compiler.sparsity.pattern import PATTERNS, pattern_mask
from tridesign.sparsity_plan import load_plan

from .conftest import export_check


def test_library_has_21_distinct_four_entry_patterns() -> None:
    assert PATTERNS.shape == (21, 3, 3)
    assert (PATTERNS.sum(axis=(1, 2)) == 4).all() and PATTERNS[:, 1, 1].all()
    assert len({p.tobytes() for p in PATTERNS}) == 21


def test_rule_per_kernel() -> None:
    w = np.random.default_rng(3).standard_normal((1, 3, 3, 3))
    keep = np.ones_like(w, dtype=bool)
    keep[0, 0] = False  # all zero -> removed
    keep[0, 1].flat[:5] = False  # five zeros -> best pattern
    keep[0, 2].flat[:4] = False  # four zeros -> restored dense
    mask, stats = pattern_mask(w, keep)
    assert not mask[0, 0].any()
    best = max(range(21), key=lambda i: float((w[0, 1] ** 2 * PATTERNS[i]).sum()))
    assert np.array_equal(mask[0, 1], PATTERNS[best])
    assert mask[0, 2].all()
    assert (stats.removed, stats.patterned, stats.dense) == (1, 1, 1)
    assert stats.pattern_ids.tolist() == [-1, best, -2]


def test_real_sparsity_is_reported_below_nominal(resnet, example) -> None:
    report = prune_torch(resnet, load_plan("pattern:4:0.9"), example)
    assert report.nominal_sparsity == 0.9
    assert 0.5 < report.real_sparsity < 0.9
    export_check(resnet, example)
    for name, rec in report.records.items():
        if rec.values.shape[2:] != (3, 3):
            continue
        kernels = rec.mask.reshape(-1, 9)
        counts = kernels.sum(axis=1)
        assert set(np.unique(counts)) <= {0, 4, 9}, name
        patterned = kernels[counts == 4]
        library = {p.ravel().tobytes() for p in PATTERNS}
        assert all(k.tobytes() in library for k in patterned), name
        assert rec.extra["kernels_removed"] + rec.extra["kernels_patterned"] + rec.extra["kernels_dense"] == len(kernels)


def test_layer_scope_ranks_each_layer_on_its_own(resnet, example) -> None:
    """`pattern:4:0.9:layer`: the magnitude step keeps 10 % of every layer (then the per-kernel rule
    restores or patterns kernels), so no layer stays near-dense as global ranking leaves early layers."""
    report = prune_torch(resnet, load_plan("pattern:4:0.9:layer"), example)
    densities = [rec.density for rec in report.records.values() if rec.values.ndim == 4 and rec.values.shape[2:] == (3, 3)]
    assert densities and max(densities) < 0.35
    assert load_plan("pattern:4:0.9:layer").default.text == "pattern:4:0.9:layer"
