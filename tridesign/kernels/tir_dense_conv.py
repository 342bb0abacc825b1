"""Dense conv2d on the CPU: a register-tiled direct convolution with its epilogue fused.

Why a hand-written dense kernel next to MetaSchedule: ONNX Runtime's MLAS runs ResNet convolutions
near this CPU's FMA peak, and MetaSchedule's generic search space needs thousands of trials to get
there (BENCHMARKS.md, TVM tuning curve). This kernel has the structure MLAS uses and only two
knobs, so a handful of measurements per layer (`tridesign.kernels.conv_tiles`) finds its best
form: an output tile of R channels × VW columns is accumulated in vector registers over every
(input channel, kh, kw) tap — one broadcast weight and one contiguous input row slice per FMA
group — then bias, residual add and ReLU are applied before the single store.

Layout: activations stay NCHW (the ONNX layout, so no transposes between layers). The input is
copied once into a zero-padded, stride-phase-split buffer (`tir_padding.PhaseSplit`), so strided
convolutions read contiguous rows too and the inner loop has no bounds checks; output rows are computed in whole VW-wide chunks (the padded tail is dropped).
Weights are packed at compile time to [CO/R, CI, KH, KW, R] so the R weights of one tap are
adjacent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_padding import PhaseSplit


@dataclass(frozen=True)
class ConvTile:
    """How one conv runs: output channels (R) × output columns (VW) held in registers, and whether by
    Winograd F(2×2, 3×3) (`tir_winograd_conv`; VW then counts 2×2 output tiles)."""

    channels: int
    columns: int
    winograd: bool = False

    def fits(self, out_channels: int) -> bool:
        return out_channels % self.channels == 0

    @property
    def label(self) -> str:
        """`8x16`, or `w16x16` for Winograd: the key of a measurement in `conv_tiles.json`."""
        return f"{'w' if self.winograd else ''}{self.channels}x{self.columns}"


def dense_conv2d_func(
    x_shape: tuple[int, int, int, int],
    w_shape: tuple[int, int, int, int],
    geom: ConvGeometry,
    tile: ConvTile,
    relu: bool,
    residual: bool,
    cores: int = 1,
) -> KernelFunc:
    """The kernel for one layer signature: call as (x, residual, packed weight, bias) -> y.

    `cores` is the target's core count (the number of private input copies, see below).

    Without a residual the `residual` argument is a one-element placeholder that is never read.
    """
    nb, c, h, w = x_shape
    co, ci, kh, kw = w_shape
    if geom.groups != 1 or ci != c:
        raise ValueError("dense_conv2d_func handles ungrouped convolutions only")
    if not tile.fits(co):
        raise ValueError(f"{co} output channels are not a multiple of the tile's {tile.channels}")
    oh, ow = geom.output_hw(h, w, (kh, kw))
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    rr, vw = tile.channels, tile.columns
    nw = -(-ow // vw)
    # phase-plane columns: enough for the padded input and for the last chunk's reads
    split = PhaseSplit.of(x_shape, (kh, kw), geom, min_cols=nw * vw + (kw - 1) * dw // sw)
    copy, copy_serial, xp_at = split.copy(), split.copy(parallel=False), split.offset
    # The accumulators only stay in registers when every index into them is a constant after
    # unrolling: rows that are whole chunks store vectors; a ragged last chunk stores unrolled
    # scalars under a bounds test (a plain loop there made LLVM keep `acc` in memory, with a store
    # after every FMA).
    whole_rows = ow % vw == 0
    store_loop = T.vectorized if whole_rows else T.unroll
    # LLVM keeps a buffer in registers only if it is a stack allocation, and TVM puts allocations of
    # 1 KiB or more on the heap: the R accumulator rows are two buffers (halves) so that tiles of up
    # to ~500 floats (all 32 AVX-512 registers) stay in registers.
    lo = rr // 2
    # Which loop the cores split: output rows where the input outweighs the weights (each core then
    # reads mostly the rows its half of the padding copy wrote), output channels elsewhere (each
    # core streams only its half of the weights, once). Measured in ResNet-18: its 512×512×3×3
    # layers (9.4 MB of weights, not cache-resident in the network) ran at 72 GFLOP/s with rows
    # split — every core re-read all weights per row — though they run at 150 alone with hot caches.
    rows_outer = c * h * w >= co * c * kh * kw
    # Where cores split channels each needs the whole input: each copies it into its own buffer and
    # works through its share of the blocks, instead of one shared copy and a second parallel region
    # (5–20% faster on ResNet-20's 16×16 and 8×8 layers and ResNet-18's 14×14 and 7×7).
    private = not rows_outer
    blocks = nb * (co // rr) * oh * nw
    per_core = -(-blocks // cores)
    res_shape = (nb, co, oh, ow) if residual else (1,)
    name = (
        f"dense_conv2d_{nb}x{c}x{h}x{w}_{co}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}"
        f"_t{rr}x{vw}{'_res' if residual else ''}{'_relu' if relu else ''}"
    )

    @T.macro
    def zero(acc, rows):
        for r in T.unroll(rows):
            for j in T.vectorized(vw):
                acc[r, j] = T.float32(0)

    @T.macro
    def accumulate(acc, r0, rows, wp, xp, n, group, oy, x0, ic, ky, kx):
        for r in T.unroll(rows):
            for j in T.vectorized(vw):
                acc[r, j] = acc[r, j] + wp[group, ic, ky, kx, r0 + r] * xp[
                    xp_at(n * c + ic, ky * dh % sh, kx * dw % sw, oy + ky * dh // sh, x0 + j + kx * dw // sw)
                ]

    @T.macro
    def store(acc, r0, rows, res, bias, y, n, group, oy, x0):
        for r in T.unroll(rows):
            for j in store_loop(vw):
                if whole_rows or x0 + j < ow:
                    if residual:
                        acc[r, j] = acc[r, j] + res[n, group * rr + r0 + r, oy, x0 + j]
                    if relu:
                        y[n, group * rr + r0 + r, oy, x0 + j] = T.max(acc[r, j] + bias[group * rr + r0 + r], T.float32(0))
                    else:
                        y[n, group * rr + r0 + r, oy, x0 + j] = acc[r, j] + bias[group * rr + r0 + r]

    @T.macro
    def conv_block(blk, xp, wp, res, bias, y):
        n = T.meta_var(blk // ((co // rr) * oh * nw))
        oy = T.meta_var(blk // (nw * (co // rr)) % oh if rows_outer else blk // nw % oh)
        group = T.meta_var(blk // nw % (co // rr) if rows_outer else blk // (oh * nw) % (co // rr))
        x0 = T.meta_var(blk % nw * vw)
        acc_lo = T.alloc_buffer((max(lo, 1), vw), "float32")
        acc_hi = T.alloc_buffer((rr - lo, vw), "float32")
        zero(acc_lo, lo)
        zero(acc_hi, rr - lo)
        for ic in range(c):
            for ky in T.unroll(kh):
                for kx in T.unroll(kw):
                    accumulate(acc_lo, 0, lo, wp, xp, n, group, oy, x0, ic, ky, kx)
                    accumulate(acc_hi, lo, rr - lo, wp, xp, n, group, oy, x0, ic, ky, kx)
        store(acc_lo, 0, lo, res, bias, y, n, group, oy, x0)
        store(acc_hi, lo, rr - lo, res, bias, y, n, group, oy, x0)

    @T.prim_func
    def kernel(
        x: T.Buffer((nb, c, h, w), "float32"),
        res: T.Buffer(res_shape, "float32"),
        wp: T.Buffer((co // rr, c, kh, kw, rr), "float32"),
        bias: T.Buffer((co,), "float32"),
        y: T.Buffer((nb, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        if private:
            for t in T.parallel(cores):
                xq = T.alloc_buffer((split.total,), "float32")
                copy_serial(x, xq)
                for q in range(per_core):
                    if t * per_core + q < blocks:
                        conv_block(t * per_core + q, xq, wp, res, bias, y)
        else:
            xp = T.alloc_buffer((split.total,), "float32")
            copy(x, xp)
            for blk in T.parallel(blocks):
                conv_block(blk, xp, wp, res, bias, y)

    signature = ("dense_conv2d", x_shape, w_shape, geom, tile, relu, residual, cores)
    return KernelFunc(kernel, signature, (nb, co, oh, ow))


def pack_weight(weight: np.ndarray, tile: ConvTile) -> np.ndarray:
    """[CO, CI, KH, KW] → [CO/R, CI, KH, KW, R]: the R weights of one tap side by side."""
    co, ci, kh, kw = weight.shape
    r = tile.channels
    return np.ascontiguousarray(weight.reshape(co // r, r, ci, kh, kw).transpose(0, 2, 3, 4, 1), dtype=np.float32)


def dense_conv2d_consts(weight: np.ndarray, bias: np.ndarray | None, tile: ConvTile) -> list[np.ndarray]:
    """The constant arguments after x and the residual: packed weight, bias (zeros when absent)."""
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    return [pack_weight(weight, tile), bias]
