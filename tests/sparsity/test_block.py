"""Block sparsity with configurable block shapes: whole blocks kept or dropped, exact block count."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.compiler.sparsity import prune_torch
from tridesign.compiler.sparsity.importance import as_matrix
from tridesign.compiler.sparsity.prune_fns import block_mask
from tridesign.kernels.formats import BSR
from tridesign.sparsity_plan import load_plan

from .conftest import export_check


@pytest.mark.parametrize("block", [(1, 4), (4, 4), (16, 1), (3, 5)])
def test_block_mask_keeps_whole_blocks(block: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    mat = rng.standard_normal((32, 40))
    mask = block_mask(mat, 0.75, block)
    br, bc = block
    rows, cols = -(-32 // br), -(-40 // bc)
    padded = np.zeros((rows * br, cols * bc), dtype=bool)
    padded[:32, :40] = mask
    per_block = padded.reshape(rows, br, cols, bc).any(axis=(1, 3))
    # every block is all kept or all dropped (inside the logical shape)
    assert np.array_equal(np.kron(per_block, np.ones(block, dtype=bool))[:32, :40], mask)
    assert per_block.sum() == round(0.25 * rows * cols)


@pytest.mark.parametrize("block", [(1, 4), (4, 4)])
def test_block_pruned_model_exports_and_packs(resnet, example, block) -> None:
    spec = f"block:0.9:{block[0]}x{block[1]}"
    report = prune_torch(resnet, load_plan(spec), example)
    export_check(resnet, example)
    for name, rec in report.records.items():
        mat = as_matrix(rec.values)
        packed = BSR.pack(mat, block)
        # the kernels' BSR format stores only the kept blocks: the packing agrees with the mask
        kept_blocks = -(-mat.shape[0] // block[0]) * -(-mat.shape[1] // block[1])
        assert packed.indices.size <= round(0.1 * kept_blocks) + 1, name
        np.testing.assert_array_equal(packed.unpack(), mat)
