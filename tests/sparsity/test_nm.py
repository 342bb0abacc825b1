"""N:M semi-structured sparsity along the reduction axis (the sparse-tensor-core layout)."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.compiler.sparsity import prune_torch
from tridesign.compiler.sparsity.importance import as_matrix
from tridesign.compiler.sparsity.prune_fns import is_nm, nm_mask
from tridesign.kernels.formats import NM
from tridesign.sparsity_plan import load_plan

from .conftest import export_check


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (2, 8)])
def test_nm_mask_exact_per_group(n: int, m: int) -> None:
    mat = np.random.default_rng(2).standard_normal((6, 10 * m))
    mask = nm_mask(mat, n, m)
    assert (mask.reshape(6, 10, m).sum(axis=2) == n).all()
    # the kept entries are the largest of their group
    groups = np.abs(mat).reshape(6, 10, m)
    kmask = mask.reshape(6, 10, m)
    assert (np.where(kmask, groups, np.inf).min(axis=2) >= np.where(kmask, -np.inf, groups).max(axis=2)).all()


def test_ragged_tail_group() -> None:
    mask = nm_mask(np.arange(1, 7, dtype=float)[None], 2, 4)  # groups [1..4] and a tail [5, 6]
    assert mask.tolist() == [[False, False, True, True, True, True]]


def test_nm_pruned_resnet_holds_2_4_and_packs(resnet, example) -> None:
    report = prune_torch(resnet, load_plan("nm:2:4"), example)
    export_check(resnet, example)
    for name, rec in report.records.items():
        mat = as_matrix(rec.values)
        assert is_nm(mat, 2, 4), name
        NM.pack(mat, 2, 4)  # raises when a group holds more than N non-zeros
    # the 3-input-channel stem has 27 columns: 6 full groups + a tail of 3 keeping 2
    assert report.records["conv1.weight"].density == pytest.approx((6 * 2 + 2) / 27)
