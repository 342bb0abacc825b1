"""Formats: pack/unpack round trips over random shapes and patterns, and the stated footprint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tridesign.errors import UsageError
from tridesign.kernels.formats import BSR, CSR, NM, TileMask

dims = st.integers(min_value=1, max_value=23)


def _sparse(seed: int, shape: tuple[int, int], density: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(rows=dims, cols=dims, density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), seed=st.integers(0, 2**16))
def test_csr_round_trip_and_footprint(rows: int, cols: int, density: float, seed: int) -> None:
    dense = _sparse(seed, (rows, cols), density)
    csr = CSR.pack(dense)
    assert np.array_equal(csr.unpack(), dense)
    nnz = int((dense != 0).sum())
    assert csr.nnz == nnz
    assert csr.footprint_bytes() == 4 * (rows + 1) + 8 * nnz


@settings(max_examples=40, deadline=None)
@given(
    rows=dims,
    cols=dims,
    br=st.integers(1, 5),
    bc=st.integers(1, 5),
    density=st.sampled_from([0.0, 0.2, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_bsr_round_trip_with_odd_sizes(rows: int, cols: int, br: int, bc: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    keep = rng.random((-(-rows // br), -(-cols // bc))) < density
    mask = np.repeat(np.repeat(keep, br, 0), bc, 1)[:rows, :cols]
    dense = (rng.standard_normal((rows, cols)) * mask).astype(np.float32)
    bsr = BSR.pack(dense, (br, bc))
    assert np.array_equal(bsr.unpack(), dense)
    nonzero_blocks = sum(
        bool(np.any(dense[i : i + br, j : j + bc])) for i in range(0, rows, br) for j in range(0, cols, bc)
    )
    assert bsr.nnz_blocks == nonzero_blocks
    assert bsr.footprint_bytes() == 4 * (-(-rows // br) + 1) + nonzero_blocks * (4 + 4 * br * bc)


def test_bsr_stores_a_dense_matrix_as_all_blocks_and_saves_memory_when_sparse() -> None:
    dense = np.ones((8, 8), np.float32)
    assert BSR.pack(dense, (4, 4)).nnz_blocks == 4
    sparse = np.zeros((64, 64), np.float32)
    sparse[:4, :4] = 1
    bsr = BSR.pack(sparse, (4, 4))
    assert bsr.block_density() == pytest.approx(1 / 256)
    assert bsr.footprint_bytes() < sparse.nbytes / 50


def _nm_matrix(rng: np.random.Generator, rows: int, cols: int, n: int, m: int) -> np.ndarray:
    padded = -(-cols // m) * m
    scores = rng.random((rows, padded // m, m))
    keep = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(keep, np.argsort(scores, axis=2)[:, :, :n], True, axis=2)
    values = rng.standard_normal((rows, padded)) * keep.reshape(rows, padded)
    values[:, : padded][rng.random((rows, padded)) < 0.1] = 0  # some groups hold fewer than n
    return values[:, :cols].astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(rows=dims, cols=dims, nm=st.sampled_from([(2, 4), (1, 4), (4, 8), (1, 2)]), seed=st.integers(0, 2**16))
def test_nm_round_trip(rows: int, cols: int, nm: tuple[int, int], seed: int) -> None:
    n, m = nm
    dense = _nm_matrix(np.random.default_rng(seed), rows, cols, n, m)
    packed = NM.pack(dense, n, m)
    assert np.array_equal(packed.unpack(), dense)
    groups = -(-cols // m)
    assert packed.values.shape == (rows, groups * n)
    assert packed.footprint_bytes() == rows * groups * n * 5  # float32 value + uint8 index


def test_nm_rejects_a_matrix_that_is_not_nm_sparse() -> None:
    with pytest.raises(UsageError, match="2:4"):
        NM.pack(np.ones((2, 8), np.float32), 2, 4)


@settings(max_examples=30, deadline=None)
@given(h=dims, w=dims, th=st.integers(1, 8), tw=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_tile_mask_covers_exactly_the_active_pixels_tiles(h: int, w: int, th: int, tw: int, seed: int) -> None:
    pixels = np.random.default_rng(seed).random((h, w)) < 0.05
    mask = TileMask.pack(pixels, (th, tw))
    covered = mask.unpack()
    assert covered.shape == (h, w)
    assert np.all(covered[pixels])  # every active pixel is computed
    assert TileMask.pack(covered, (th, tw)).active.tolist() == mask.active.tolist()
    assert mask.active.shape == (-(-h // th), -(-w // tw))
    assert len(mask.active_ids()) == int(mask.active.sum())
    assert mask.footprint_bytes() == -(-mask.active.size // 8)
