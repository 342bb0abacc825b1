"""Tile-sparse conv2d for data sparsity: compute only the active output tiles, reuse the rest.

The tri-design video pipeline drops image patches (and the matching feature-map tiles) whose
content did not change. For one frame this kernel

1. copies the previous frame's output (what every inactive tile keeps),
2. for each active tile, in parallel: *gathers* the input window the tile needs -- the tile grown
   by its receptive-field halo, zero outside the image -- into a small private buffer,
3. runs a sparse (CSR) conv on that buffer -- each non-zero's offset into the window fixed at pack
   time, four non-zeros per pass -- so weight sparsity composes with data sparsity, and *scatters*
   the tile back into the output (clipped at the image border).

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
        offsets = T.match_buffer(i_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        for o in T.parallel(co):
            for i in range(oh):
                for j in T.vectorized(ow):
                    y[0, o, i, j] = previous[0, o, i, j]
        for t in T.parallel(n_active):
            y0 = tiles[t] // tiles_x * th
            x0 = tiles[t] % tiles_x * tw
            window = T.alloc_buffer((c * ih * iw,), "float32")
            acc = T.alloc_buffer((th, tw), "float32")
            for ci in range(c):
                for i in range(ih):
                    for j in range(iw):
                        window[(ci * ih + i) * iw + j] = T.if_then_else(
                            y0 * sh - ph + i >= 0 and y0 * sh - ph + i < h and x0 * sw - pw + j >= 0 and x0 * sw - pw + j < w,
                            x[0, ci, T.min(T.max(y0 * sh - ph + i, 0), h - 1), T.min(T.max(x0 * sw - pw + j, 0), w - 1)],
                            T.float32(0),
                        )
            for o in range(co):
                for i in range(th):
                    for j in T.vectorized(tw):
                        acc[i, j] = T.float32(0)
                # Four non-zeros per pass, as in tir_conv: one accumulator load/store per four FMAs.
                for q in range((indptr[o + 1] - indptr[o]) // 4):
                    for i in range(th):
                        for j in T.vectorized(tw):
                            acc[i, j] = (
                                acc[i, j]
                                + data[indptr[o] + q * 4] * window[offsets[indptr[o] + q * 4] + i * sh * iw + j * sw]
                                + data[indptr[o] + q * 4 + 1] * window[offsets[indptr[o] + q * 4 + 1] + i * sh * iw + j * sw]
                                + data[indptr[o] + q * 4 + 2] * window[offsets[indptr[o] + q * 4 + 2] + i * sh * iw + j * sw]
                                + data[indptr[o] + q * 4 + 3] * window[offsets[indptr[o] + q * 4 + 3] + i * sh * iw + j * sw]
                            )
                for q in range((indptr[o + 1] - indptr[o]) % 4):
                    for i in range(th):
                        for j in T.vectorized(tw):
                            acc[i, j] = acc[i, j] + data[indptr[o + 1] - 1 - q] * window[
                                offsets[indptr[o + 1] - 1 - q] + i * sh * iw + j * sw
                            ]
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
    return BoundKernel(kf, tile_conv2d_consts(weight, geom, tile), target)


def tile_conv2d_consts(weight: np.ndarray, geom: ConvGeometry, tile: tuple[int, int]) -> list[np.ndarray]:
    """indptr, per-non-zero offsets into the gathered window, values (offsets fixed at pack time)."""
    co, cig, kh, kw = weight.shape
    (sh, sw), (dh, dw), g = geom.stride, geom.dilation, geom.groups
    ih, iw = (tile[0] - 1) * sh + (kh - 1) * dh + 1, (tile[1] - 1) * sw + (kw - 1) * dw + 1
    csr = conv_weight_csr(weight)
    indptr, indices, data = csr_consts(csr)
    rows = np.repeat(np.arange(co), np.diff(csr.indptr))
    col = csr.indices.astype(np.int64)
    ci = rows // (co // g) * cig + col // (kh * kw)
    offsets = (ci * ih + col % (kh * kw) // kw * dh) * iw + col % kw * dw
    return [indptr, offsets.astype(np.int32) if csr.nnz else indices, data]


def run_tile_conv2d(kernel: BoundKernel, x: np.ndarray, previous: np.ndarray, mask: TileMask) -> np.ndarray:
    """Run with a mask; with no active tile the previous output is returned as is (nothing to compute)."""
    ids = mask.active_ids()
    if ids.size == 0:
        return np.array(previous, dtype=np.float32, copy=True)
    return kernel(x, previous, ids)
