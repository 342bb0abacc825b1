"""The masked conv kernels against a direct numpy oracle: relu?((conv + bias) · mask + residual?)."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.kernels.build import build
from tridesign.kernels.reference import ConvGeometry, conv2d
from tridesign.kernels.tir_masked_conv import (
    PixelTile,
    RunTile,
    masked_conv2d_consts,
    masked_conv2d_func,
    masked_sparse_conv2d_consts,
    masked_sparse_conv2d_func,
    RunLayout,
    pixel_tile,
)

tvm = pytest.importorskip("tvm")

RTOL = 1e-5  # of the output's largest magnitude: fp32 accumulation order only


def _run(kf, args: list[np.ndarray]) -> np.ndarray:
    mod = build(kf.func, kf.signature)
    arrays = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
    arrays.append(tvm.runtime.tensor(np.full(kf.out_shape, np.nan, np.float32)))  # every output must be written
    mod[kf.name](*arrays)
    return arrays[-1].numpy()


def _oracle(x, w, b, geom, mask, res, relu):
    y = (conv2d(x, w, geom) + b[None, :, None, None]) * mask
    if res is not None:
        y = y + res
    return np.maximum(y, 0) if relu else y


def _case(rng, x_shape, w_shape, geom, keep=0.6):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    oh, ow = geom.output_hw(x_shape[2], x_shape[3], w_shape[2:])
    mask = (rng.random((1, 1, oh, ow)) < keep).astype(np.float32)
    res = rng.standard_normal((1, w_shape[0], oh, ow)).astype(np.float32)
    return x, w, b, mask, res


SHAPES = [
    ((1, 16, 12, 22), (32, 16, 3, 3), ConvGeometry((1, 1), (1, 1))),  # C4-like 3x3
    ((1, 8, 16, 24), (16, 8, 3, 3), ConvGeometry((2, 2), (1, 1))),  # strided 3x3
    ((1, 3, 24, 40), (8, 3, 7, 7), ConvGeometry((2, 2), (3, 3))),  # the stem
    ((1, 16, 10, 14), (32, 16, 1, 1), ConvGeometry((2, 2), (0, 0))),  # downsample 1x1/2
    ((1, 8, 10, 45), (16, 8, 3, 3), ConvGeometry((1, 1), (1, 1))),  # a map wide enough for runs within rows
]


@pytest.mark.parametrize("x_shape, w_shape, geom", SHAPES)
@pytest.mark.parametrize("residual, relu", [(False, True), (True, True), (False, False)])
def test_dense_weight_masked_conv_matches_the_oracle(x_shape, w_shape, geom, residual, relu):
    rng = np.random.default_rng(0)
    x, w, b, mask, res = _case(rng, x_shape, w_shape, geom)
    tile = pixel_tile(w_shape[0], 16)
    kf = masked_conv2d_func(x_shape, w_shape, geom, tile, relu, residual, 2)
    got = _run(kf, [x, mask, res if residual else np.zeros(1, np.float32), *masked_conv2d_consts(w, b, tile)])
    want = _oracle(x, w, b, geom, mask, res if residual else None, relu)
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * np.abs(want).max())


@pytest.mark.parametrize("keep", [0.0, 0.03, 1.0])
def test_empty_sparse_and_full_masks(keep):
    rng = np.random.default_rng(1)
    x_shape, w_shape, geom = SHAPES[0]
    x, w, b, mask, res = _case(rng, x_shape, w_shape, geom, keep)
    tile = PixelTile(8, 5)  # a pixel count that leaves a partial last group
    kf = masked_conv2d_func(x_shape, w_shape, geom, tile, True, True, 2)
    got = _run(kf, [x, mask, res, *masked_conv2d_consts(w, b, tile)])
    np.testing.assert_allclose(got, _oracle(x, w, b, geom, mask, res, True), rtol=0, atol=1e-4)


@pytest.mark.parametrize("x_shape, w_shape, geom", SHAPES)
@pytest.mark.parametrize("masked", [True, False])
def test_csr_masked_conv_matches_the_oracle_with_pruned_weights(x_shape, w_shape, geom, masked):
    rng = np.random.default_rng(2)
    x, w, b, mask, res = _case(rng, x_shape, w_shape, geom)
    w = w * (rng.random(w.shape) < 0.15)
    kf = masked_sparse_conv2d_func(x_shape, w_shape, geom, RunTile(16, 4), masked, True, True)
    got = _run(kf, [x, mask if masked else np.zeros(1, np.float32), res, *masked_sparse_conv2d_consts(w, b, x_shape, geom)])
    want = _oracle(x, w, b, geom, mask if masked else 1.0, res, True)
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * np.abs(want).max())


def test_all_zero_weight_gives_the_epilogue_of_the_bias():
    rng = np.random.default_rng(3)
    x_shape, w_shape, geom = SHAPES[0]
    x, w, b, mask, res = _case(rng, x_shape, w_shape, geom)
    kf = masked_sparse_conv2d_func(x_shape, w_shape, geom, RunTile(16, 8), True, False, False)
    got = _run(kf, [x, mask, np.zeros(1, np.float32), *masked_sparse_conv2d_consts(np.zeros_like(w), b, x_shape, geom)])
    np.testing.assert_array_equal(got, np.broadcast_to(b[None, :, None, None] * mask, got.shape))


def test_runs_start_at_active_pixels_and_cover_each_one():
    geom = ConvGeometry((1, 1), (1, 1))
    layout = RunLayout.of((1, 4, 3, 40), (4, 4, 3, 3), geom, RunTile(16, 8))
    assert not layout.wide and layout.cols == 42
    mask = np.zeros((3, 40), bool)
    mask[0, [2, 3, 20, 39]] = True
    mask[2, 5:40] = True
    starts = layout.starts(mask)
    assert starts.tolist() == [2, 20, 39, 2 * 42 + 5, 2 * 42 + 21, 2 * 42 + 37]
    covered = np.zeros((3, 42), bool)
    for s in starts:
        covered.ravel()[s:min(s + 16, (s // 42 + 1) * 42)] = True
    assert covered[:, :40][mask].all()
    assert len(layout.starts(None)) == 3 * 3 == layout.max_runs
    assert layout.computed_pixels(mask) == 8 * 16  # six runs in one group of eight


def test_narrow_maps_run_across_rows():
    layout = RunLayout.of((1, 4, 6, 11), (4, 4, 3, 3), ConvGeometry((1, 1), (1, 1)), RunTile(16, 8))
    assert layout.wide and layout.max_runs == 5 and layout.group == 5  # 5 runs of 16 cover 6 rows of 13
    mask = np.zeros((6, 11), bool)
    mask[0, 0] = mask[0, 10] = mask[1, 4] = True  # positions 0, 10, 17 on the 13-column pitch
    assert layout.starts(mask).tolist() == [0, 17]
