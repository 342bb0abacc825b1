"""Every CPU kernel against its numpy reference over random patterns, sparsities and shapes.

Shapes are drawn from a few signatures per kernel (odd sizes, padding, groups, dilation, strides)
so the compiled-kernel cache keeps compile counts low; patterns and sparsities are drawn freely,
including empty rows, an all-zero weight and fully dense blocks. Tolerance: rtol=atol=1e-4
(float32 sums reordered against a float64 reference).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tridesign.kernels import reference as ref
from tridesign.kernels.formats import BSR, NM, TileMask
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.tir_bsr import bind_bsr_matmul
from tridesign.kernels.tir_conv import bind_sparse_conv2d
from tridesign.kernels.tir_nm import bind_nm_matmul
from tridesign.kernels.tir_tile import bind_tile_conv2d, run_tile_conv2d

TOL = dict(rtol=1e-4, atol=1e-4)
densities = st.sampled_from([0.0, 0.05, 0.3, 1.0])
seeds = st.integers(0, 2**16)


def _block_sparse(rng: np.random.Generator, shape: tuple[int, int], block: tuple[int, int], density: float) -> np.ndarray:
    keep = rng.random((-(-shape[0] // block[0]), -(-shape[1] // block[1]))) < density
    keep[rng.integers(keep.shape[0])] = False  # at least one empty block row
    mask = np.repeat(np.repeat(keep, block[0], 0), block[1], 1)[: shape[0], : shape[1]]
    return (rng.standard_normal(shape) * mask).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(
    sig=st.sampled_from([(13, 7, 5, (2, 3)), (32, 48, 70, (4, 4)), (9, 16, 1, (1, 1)), (24, 20, 130, (8, 1))]),
    density=densities,
    seed=seeds,
)
def test_bsr_matmul_matches_reference(sig: tuple, density: float, seed: int) -> None:
    m, k, n, block = sig
    rng = np.random.default_rng(seed)
    w = _block_sparse(rng, (m, k), block, density)
    x = rng.standard_normal((k, n)).astype(np.float32)
    packed = BSR.pack(w, block)
    np.testing.assert_allclose(bind_bsr_matmul(packed, n)(x), ref.bsr_matmul(packed, x), **TOL)
    np.testing.assert_allclose(ref.bsr_matmul(packed, x), w @ x, **TOL)


CONV_SIGNATURES = [
    ((1, 8, 9, 9), (6, 8, 3, 3), ConvGeometry((1, 1), (1, 1))),  # ResNet 3×3
    ((2, 6, 11, 8), (4, 3, 3, 3), ConvGeometry((2, 1), (1, 2), (2, 1), 2)),  # stride, dilation, groups
    ((1, 3, 17, 17), (5, 3, 7, 7), ConvGeometry((2, 2), (3, 3))),  # stem
    ((1, 6, 7, 7), (6, 1, 3, 3), ConvGeometry((1, 1), (1, 1), (1, 1), 6)),  # depthwise
    ((1, 8, 10, 10), (12, 8, 1, 1), ConvGeometry((2, 2))),  # 1×1 downsample
]


@settings(max_examples=30, deadline=None)
@given(sig=st.sampled_from(CONV_SIGNATURES), density=densities, seed=seeds)
def test_sparse_conv2d_matches_reference(sig: tuple, density: float, seed: int) -> None:
    x_shape, w_shape, geom = sig
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(w_shape) * (rng.random(w_shape) < density)).astype(np.float32)
    w[rng.integers(w_shape[0])] = 0  # an output channel with no weight at all
    x = rng.standard_normal(x_shape).astype(np.float32)
    np.testing.assert_allclose(bind_sparse_conv2d(w, x_shape, geom)(x), ref.conv2d(x, w, geom), **TOL)


def test_conv_reference_matches_torch() -> None:
    import torch

    rng = np.random.default_rng(0)
    for x_shape, w_shape, geom in CONV_SIGNATURES:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), stride=geom.stride, padding=geom.padding,
            dilation=geom.dilation, groups=geom.groups,
        ).numpy()
        np.testing.assert_allclose(ref.conv2d(x, w, geom), expected, **TOL)


@settings(max_examples=20, deadline=None)
@given(sig=st.sampled_from([(8, 16, 24), (5, 7, 3), (16, 30, 1)]), drop=st.sampled_from([0.0, 0.5]), seed=seeds)
def test_nm_matmul_matches_reference(sig: tuple, drop: float, seed: int) -> None:
    m, k, n = sig
    rng = np.random.default_rng(seed)
    kp = -(-k // 4) * 4
    keep = np.zeros((m, kp // 4, 4), bool)
    np.put_along_axis(keep, np.argsort(rng.random(keep.shape), axis=2)[:, :, :2], True, axis=2)
    w = (rng.standard_normal((m, kp)) * keep.reshape(m, kp) * (rng.random((m, kp)) >= drop))[:, :k].astype(np.float32)
    x = rng.standard_normal((k, n)).astype(np.float32)
    packed = NM.pack(w, 2, 4)
    np.testing.assert_allclose(bind_nm_matmul(packed, n)(x), ref.nm_matmul(packed, x), **TOL)
    np.testing.assert_allclose(ref.nm_matmul(packed, x), w @ x, **TOL)


TILE_SIGNATURES = [
    ((1, 4, 12, 13), (5, 4, 3, 3), ConvGeometry((1, 1), (1, 1)), (4, 5)),
    ((1, 6, 15, 11), (4, 3, 3, 3), ConvGeometry((2, 1), (1, 2), (2, 1), 2), (3, 4)),
]


@settings(max_examples=20, deadline=None)
@given(sig=st.sampled_from(TILE_SIGNATURES), active=st.sampled_from([0.0, 0.3, 1.0]), wdens=densities, seed=seeds)
def test_tile_conv2d_is_exact_on_active_tiles_and_reuses_the_rest(
    sig: tuple, active: float, wdens: float, seed: int
) -> None:
    x_shape, w_shape, geom, tile = sig
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(w_shape) * (rng.random(w_shape) < max(wdens, 0.05))).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    oh, ow = geom.output_hw(x_shape[2], x_shape[3], w_shape[2:])
    previous = rng.standard_normal((1, w_shape[0], oh, ow)).astype(np.float32)
    grid = (-(-oh // tile[0]), -(-ow // tile[1]))
    mask = TileMask(oh, ow, tile, rng.random(grid) < active)
    got = run_tile_conv2d(bind_tile_conv2d(w, x_shape, geom, tile), x, previous, mask)
    expected = ref.tile_conv2d(x, w, geom, mask, previous)
    np.testing.assert_allclose(got, expected, **TOL)
    inactive = ~mask.unpack()
    assert np.array_equal(got[0][:, inactive], previous[0][:, inactive])  # reused bit for bit
