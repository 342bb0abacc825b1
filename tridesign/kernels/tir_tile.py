"""Tile-sparse conv2d for data sparsity: compute only the active output tiles, reuse the rest.

The tri-design video pipeline drops image patches (and the matching feature-map tiles) whose
content did not change. For one frame this kernel

1. copies the previous frame's output (what every inactive tile keeps),
2. for each active tile, in parallel: *gathers* the input window the tile needs -- the tile grown
   by its receptive-field halo, zero outside the image -- into a small private buffer,
3. runs the sparse (CSR) conv of `tir_conv` on that buffer, so weight sparsity composes with data
   sparsity, and *scatters* the tile back into the output (clipped at the image border).

Active tiles are exact: the halo makes them independent of the tile size. The active tile ids are
a runtime input (they change every frame), so one compiled kernel serves every mask.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.formats import TileMask
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import BoundKernel, KernelFunc
from tridesign.kernels.tir_conv import conv_weight_csr, csr_consts


def tile_conv2d_func(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry, tile: tuple[int, int]
) -> KernelFunc:
    """The kernel for one (layer, tile size) signature; batch 1 (one video frame at a time)."""
    nb, c, h, w = x_shape
    if nb != 1:
        raise ValueError("tile-sparse conv runs one frame at a time (batch 1)")
    co, cig, kh, kw = w_shape
    oh, ow = geom.output_hw(h, w, (kh, kw))
    (sh, sw), (ph, pw), (dh, dw), g = geom.stride, geom.padding, geom.dilation, geom.groups
    th, tw = tile
    tiles_x = -(-ow // tw)
    ih, iw = (th - 1) * sh + (kh - 1) * dh + 1, (tw - 1) * sw + (kw - 1) * dw + 1
    cog = co // g
    kk = kh * kw
    name = f"tile_conv2d_{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}g{g}_t{th}x{tw}"

    @T.prim_func
    def kernel(
        x: T.Buffer((1, c, h, w), "float32"),
        previous: T.Buffer((1, co, oh, ow), "float32"),
        t_handle: T.handle,
        indptr: T.Buffer((co + 1,), "int32"),
        i_handle: T.handle,
        d_handle: T.handle,
        y: T.Buffer((1, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        n_active = T.int32()
        nnz = T.int32()
        tiles = T.match_buffer(t_handle, (n_active,), "int32")
        indices = T.match_buffer(i_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        for o in T.parallel(co):
            for i in range(oh):
                for j in T.vectorized(ow):
                    y[0, o, i, j] = previous[0, o, i, j]
        for t in T.parallel(n_active):
            y0 = tiles[t] // tiles_x * th
            x0 = tiles[t] % tiles_x * tw
            window = T.alloc_buffer((c, ih, iw), "float32")
            acc = T.alloc_buffer((th, tw), "float32")
            for ci in range(c):
                for i in range(ih):
                    for j in range(iw):
                        window[ci, i, j] = T.if_then_else(
                            y0 * sh - ph + i >= 0 and y0 * sh - ph + i < h and x0 * sw - pw + j >= 0 and x0 * sw - pw + j < w,
                            x[0, ci, T.min(T.max(y0 * sh - ph + i, 0), h - 1), T.min(T.max(x0 * sw - pw + j, 0), w - 1)],
                            T.float32(0),
                        )
            for o in range(co):
                for i in range(th):
                    for j in T.vectorized(tw):
                        acc[i, j] = T.float32(0)
                for q in range(indptr[o + 1] - indptr[o]):
                    p = indptr[o] + q
                    ci = o // cog * cig + indices[p] // kk
                    rr = indices[p] % kk // kw * dh
                    ss = indices[p] % kw * dw
                    for i in range(th):
                        for j in T.vectorized(tw):
                            acc[i, j] = acc[i, j] + data[p] * window[ci, i * sh + rr, j * sw + ss]
                for i in range(th):
                    if y0 + i < oh:
                        for j in range(tw):
                            if x0 + j < ow:
                                y[0, o, y0 + i, x0 + j] = acc[i, j]

    return KernelFunc(kernel, ("tile_conv2d", x_shape, w_shape, geom, tile), (1, co, oh, ow))


def bind_tile_conv2d(
    weight: np.ndarray, x_shape: tuple[int, int, int, int], geom: ConvGeometry, tile: tuple[int, int], target=None
) -> BoundKernel:
    """A ready-to-call kernel: `kernel(x, previous, mask.active_ids())` → this frame's output."""
    kf = tile_conv2d_func(tuple(x_shape), tuple(weight.shape), geom, tile)
    return BoundKernel(kf, csr_consts(conv_weight_csr(weight)), target)


def run_tile_conv2d(kernel: BoundKernel, x: np.ndarray, previous: np.ndarray, mask: TileMask) -> np.ndarray:
    """Run with a mask; with no active tile the previous output is returned as is (nothing to compute)."""
    ids = mask.active_ids()
    if ids.size == 0:
        return np.array(previous, dtype=np.float32, copy=True)
    return kernel(x, previous, ids)
