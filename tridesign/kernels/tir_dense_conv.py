"""Dense conv2d on the CPU: a register-tiled direct convolution with its epilogue fused.

Why a hand-written dense kernel next to MetaSchedule: ONNX Runtime's MLAS runs ResNet convolutions
near this CPU's FMA peak, and MetaSchedule's generic search space needs thousands of trials to get
there (BENCHMARKS.md, TVM tuning curve). This kernel has the structure MLAS uses and a few
knobs (the tile), so a handful of measurements per layer (`tridesign.kernels.conv_tiles`) finds
its best form: an output tile of R channels × VW columns (× RH rows) is accumulated in vector
registers over every (input channel, kh, kw) tap — one broadcast weight and one contiguous input
row slice per FMA group — then bias, residual add and ReLU are applied before the single store.

Layout: activations stay NCHW (the ONNX layout, so no transposes between layers). The input is
copied once into a zero-padded, stride-phase-split buffer (`tir_padding.PhaseSplit`), so strided
convolutions read contiguous rows too and the inner loop has no bounds checks; output rows are computed in whole VW-wide chunks (the padded tail is dropped).
Weights are packed at compile time to [⌈CO/R⌉, CI, KH, KW, R] so the R weights of one tap are
adjacent.

Registers decide the tile: R·RH·⌈VW/floats⌉ accumulators plus the loaded input slices and one
broadcast weight must fit the vector register file, or LLVM spills accumulators on every tap.
With AVX2's 16 registers that is 12 accumulators (6×16, or 6×2×8 on 8-column maps); R need not
divide the channel count, so such tiles serve 16-, 32- and 64-channel layers alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_padding import PhaseSplit


@dataclass(frozen=True)
class ConvTile:
    """How one conv runs: output channels (R) × output rows × output columns (VW) held in registers,
    and whether by Winograd F(2×2, 3×3) (`tir_winograd_conv`; VW then counts 2×2 output tiles, and
    there is one row).

    R need not divide the layer's output channels for the direct kernel: the last channel group
    then stores only the remainder (16 channels in tiles of 6: 6, 6, 4). Several output rows per tile
    serve narrow maps, where one row is shorter than the vectors a tile wants (8×8 maps in tiles
    of 2 rows × 8 columns). `across_channels` turns the vectors the other way: R output channels
    (a multiple of the vector width) × `columns` output pixels, one broadcast input and R/floats
    weight vectors per FMA group — no lanes wasted on maps whose width is not a multiple of the
    vector (ResNet-18's 7×7), at the price of scalar stores. Winograd tiles turn the same way
    (`tir_winograd_conv`: R channels × `columns` tiles of its products).
    """

    channels: int
    columns: int
    winograd: bool = False
    rows: int = 1
    across_channels: bool = False

    def fits(self, out_channels: int, out_rows: int) -> bool:
        """Whether the tile can run a layer with these output channels and rows."""
        if self.winograd:
            return out_channels % self.channels == 0
        return self.channels <= out_channels and out_rows % self.rows == 0

    def registers(self, floats: int) -> int:
        """Vector registers the accumulators take with `floats` floats per register."""
        if self.across_channels:
            return -(-self.channels // floats) * self.columns
        return self.channels * self.rows * -(-self.columns // floats)

    @property
    def label(self) -> str:
        """`8x16`, `6x2x8` (channels × rows × columns), `c16x6` (vectors across channels × pixels),
        or `w16x16`, `wc16x6` for Winograd: the key of a measurement in `conv_tiles.json`."""
        if self.winograd:
            return f"w{'c' if self.across_channels else ''}{self.channels}x{self.columns}"
        if self.across_channels:
            return f"c{self.channels}x{self.columns}"
        return f"{self.channels}x{self.columns}" if self.rows == 1 else f"{self.channels}x{self.rows}x{self.columns}"


@functools.lru_cache(maxsize=256)
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

    Cached per signature: building one is mostly TVMScript parsing (0.4–0.7 s), and `tune` times a
    layer's candidates before `compile` builds the chosen one again.

    `cores` is the target's core count: the kernel is one parallel region of that many slices (see below).

    Without a residual the `residual` argument is a one-element placeholder that is never read.
    """
    nb, c, h, w = x_shape
    co, ci, kh, kw = w_shape
    if geom.groups != 1 or ci != c:
        raise ValueError("dense_conv2d_func handles ungrouped convolutions only")
    oh, ow = geom.output_hw(h, w, (kh, kw))
    if tile.winograd or not tile.fits(co, oh):
        raise ValueError(f"tile {tile.label} does not fit {co} output channels × {oh} output rows")
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    rr, rh, vw = tile.channels, tile.rows, tile.columns
    groups = -(-co // rr)
    # Where rr does not divide co the last group computes rr channels too (its padded weights are
    # zeros) and stores only the real ones: one tile body, not a second one for the remainder —
    # each body is seconds of TVMScript parsing, paid for every layer shape `compile` and `tune` build.
    ragged = co % rr != 0
    pixels = oh * ow
    if tile.across_channels:
        units = -(-pixels // vw)  # runs of `vw` output pixels, in row-major order
        min_cols = ow + (kw - 1) * dw // sw
    else:
        nrb, nw = oh // rh, -(-ow // vw)
        units = nrb * nw  # blocks of rh rows × vw columns
        min_cols = nw * vw + (kw - 1) * dw // sw  # the last chunk reads past the row
    split = PhaseSplit.of(x_shape, (kh, kw), geom, min_cols=min_cols)
    copy_rows, xp_at = split.copy_rows(), split.offset
    # The accumulators only stay in registers when every index into them is a constant after
    # unrolling: rows that are whole chunks store vectors; a ragged last chunk stores unrolled
    # scalars under a bounds test (a plain loop there made LLVM keep `acc` in memory, with a store
    # after every FMA).
    whole_rows = ow % vw == 0
    store_loop = T.vectorized if whole_rows else T.unroll
    # Which loop the cores split: output rows where the input outweighs the weights (each core then
    # reads mostly the rows its half of the padding copy wrote), output channels elsewhere (each
    # core streams only its half of the weights, once). Measured in ResNet-18: its 512×512×3×3
    # layers (9.4 MB of weights, not cache-resident in the network) ran at 72 GFLOP/s with rows
    # split — every core re-read all weights per row — though they run at 150 alone with hot caches.
    rows_outer = c * h * w >= co * c * kh * kw
    # One parallel region, one slice of the blocks per core: each core copies the padded input rows
    # its blocks read (all of them where channels are split) into its own buffer, then runs them.
    # A shared copy needs a parallel region of its own, and so a barrier, before the convolution:
    # the private copy made ResNet-20's 16×16 and 8×8 layers and ResNet-18's 14×14 and 7×7 5–20%
    # faster, and each region costs ~2 µs to start on 2 cores (ResNet-20's layers take 8–35 µs).
    blocks = nb * groups * units
    per_core = -(-blocks // cores)
    halo = (kh - 1) * dh // sh  # plane rows below an output row that its taps read

    def plane_rows(first_blk, last_blk):
        """First and last plane row (numbered across the batch) that blocks first…last read, in
        rows-outer order (their output rows ascend with the block)."""
        u0, u1 = first_blk // groups % units, last_blk // groups % units
        if tile.across_channels:
            oy0, oy1 = u0 * vw // ow, T.min(u1 * vw + vw - 1, pixels - 1) // ow
        else:
            oy0, oy1 = u0 // nw * rh, u1 // nw * rh + rh - 1
        return first_blk // (groups * units) * split.rows + oy0, last_blk // (groups * units) * split.rows + oy1 + halo
    res_shape = (nb, co, oh, ow) if residual else (1,)
    name = (
        f"dense_conv2d_{nb}x{c}x{h}x{w}_{co}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}"
        f"_t{tile.label}{'_res' if residual else ''}{'_relu' if relu else ''}"
    )

    @T.macro
    def put(value, res, bias, y, n, ch, oy, ox):
        """The fused epilogue of one output element: bias, residual add, ReLU."""
        if residual:
            if relu:
                y[n, ch, oy, ox] = T.max(value + bias[ch] + res[n, ch, oy, ox], T.float32(0))
            else:
                y[n, ch, oy, ox] = value + bias[ch] + res[n, ch, oy, ox]
        elif relu:
            y[n, ch, oy, ox] = T.max(value + bias[ch], T.float32(0))
        else:
            y[n, ch, oy, ox] = value + bias[ch]

    @T.macro
    def zero(acc, count, width):
        for r in T.unroll(count):
            for j in T.vectorized(width):
                acc[r, j] = T.float32(0)

    # Row tiles: acc[channel, row · vw + column], one input row slice per tile row and tap.
    @T.macro
    def accumulate(acc, r0, channels, wp, xp, n, group, oy, x0, ic, ky, kx):
        for r in T.unroll(channels):
            for i in T.unroll(rh):
                for j in T.vectorized(vw):
                    acc[r, i * vw + j] = acc[r, i * vw + j] + wp[group, ic, ky, kx, r0 + r] * xp[
                        xp_at(n * c + ic, ky * dh % sh, kx * dw % sw, oy + i + ky * dh // sh, x0 + j + kx * dw // sw)
                    ]

    @T.macro
    def store(acc, r0, channels, res, bias, y, n, group, oy, x0):
        for r in T.unroll(channels):
            for i in T.unroll(rh):
                for j in store_loop(vw):
                    if (whole_rows or x0 + j < ow) and (not ragged or group * rr + r0 + r < co):
                        put(acc[r, i * vw + j], res, bias, y, n, group * rr + r0 + r, oy + i, x0 + j)

    @T.macro
    def row_tile(n, group, oy, x0, xp, wp, res, bias, y):
        # LLVM keeps a buffer in registers only if it is a stack allocation, and TVM puts
        # allocations of 1 KiB or more on the heap: the accumulators are two buffers (halves) so
        # that tiles of up to ~500 floats (all 32 AVX-512 registers) stay in registers.
        acc_lo = T.alloc_buffer((max(rr // 2, 1), rh * vw), "float32")
        acc_hi = T.alloc_buffer((rr - rr // 2, rh * vw), "float32")
        zero(acc_lo, rr // 2, rh * vw)
        zero(acc_hi, rr - rr // 2, rh * vw)
        for ic in range(c):
            for ky in T.unroll(kh):
                for kx in T.unroll(kw):
                    accumulate(acc_lo, 0, rr // 2, wp, xp, n, group, oy, x0, ic, ky, kx)
                    accumulate(acc_hi, rr // 2, rr - rr // 2, wp, xp, n, group, oy, x0, ic, ky, kx)
        store(acc_lo, 0, rr // 2, res, bias, y, n, group, oy, x0)
        store(acc_hi, rr // 2, rr - rr // 2, res, bias, y, n, group, oy, x0)

    # Pixel tiles: acc[pixel, channel], one broadcast input pixel and the rr weights of a tap per
    # FMA group; a pixel past the map recomputes the last one and is not stored.
    @T.macro
    def accumulate_pixels(acc, p0, count, wp, xp, n, group, q0, ic, ky, kx):
        for p in T.unroll(count):
            for m in T.vectorized(rr):
                acc[p, m] = acc[p, m] + wp[group, ic, ky, kx, m] * xp[
                    xp_at(
                        n * c + ic, ky * dh % sh, kx * dw % sw,
                        T.min(q0 + p0 + p, pixels - 1) // ow + ky * dh // sh,
                        T.min(q0 + p0 + p, pixels - 1) % ow + kx * dw // sw,
                    )
                ]

    @T.macro
    def store_pixels(acc, p0, count, res, bias, y, n, group, q0):
        for p in T.unroll(count):
            if q0 + p0 + p < pixels:
                for m in T.unroll(rr):
                    if not ragged or group * rr + m < co:
                        put(acc[p, m], res, bias, y, n, group * rr + m, (q0 + p0 + p) // ow, (q0 + p0 + p) % ow)

    @T.macro
    def pixel_tile(n, group, q0, xp, wp, res, bias, y):
        acc_lo = T.alloc_buffer((max(vw // 2, 1), rr), "float32")  # halves, as in row_tile
        acc_hi = T.alloc_buffer((vw - vw // 2, rr), "float32")
        zero(acc_lo, vw // 2, rr)
        zero(acc_hi, vw - vw // 2, rr)
        for ic in range(c):
            for ky in T.unroll(kh):
                for kx in T.unroll(kw):
                    accumulate_pixels(acc_lo, 0, vw // 2, wp, xp, n, group, q0, ic, ky, kx)
                    accumulate_pixels(acc_hi, vw // 2, vw - vw // 2, wp, xp, n, group, q0, ic, ky, kx)
        store_pixels(acc_lo, 0, vw // 2, res, bias, y, n, group, q0)
        store_pixels(acc_hi, vw // 2, vw - vw // 2, res, bias, y, n, group, q0)

    @T.macro
    def block(blk, xp, wp, res, bias, y):
        # blocks of one spatial unit are adjacent where rows are split (they share input rows),
        # blocks of one channel group where channels are (they share weights)
        n = T.meta_var(blk // (groups * units))
        u = T.meta_var(blk // groups % units if rows_outer else blk % units)
        group = T.meta_var(blk % groups if rows_outer else blk // units % groups)
        if tile.across_channels:
            pixel_tile(n, group, u * vw, xp, wp, res, bias, y)
        else:
            row_tile(n, group, u // nw * rh, u % nw * vw, xp, wp, res, bias, y)

    @T.prim_func
    def kernel(
        x: T.Buffer((nb, c, h, w), "float32"),
        res: T.Buffer(res_shape, "float32"),
        wp: T.Buffer((groups, c, kh, kw, rr), "float32"),
        bias: T.Buffer((co,), "float32"),
        y: T.Buffer((nb, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        for t in T.parallel(cores):
            xq = T.alloc_buffer((split.total,), "float32")
            if rows_outer:
                copy_rows(x, xq, *plane_rows(t * per_core, T.min(t * per_core + per_core, blocks) - 1))
            else:
                copy_rows(x, xq, 0, nb * split.rows - 1)
            for q in range(per_core):
                if t * per_core + q < blocks:
                    block(t * per_core + q, xq, wp, res, bias, y)

    signature = ("dense_conv2d", x_shape, w_shape, geom, tile, relu, residual, cores)
    return KernelFunc(kernel, signature, (nb, co, oh, ow))


def pack_weight(weight: np.ndarray, tile: ConvTile) -> np.ndarray:
    """[CO, CI, KH, KW] → [⌈CO/R⌉, CI, KH, KW, R]: the R weights of one tap side by side (the last
    group zero-padded where R does not divide CO: those channels are computed, never stored)."""
    co, ci, kh, kw = weight.shape
    r = tile.channels
    padded = np.zeros((-(-co // r) * r, ci, kh, kw), np.float32)
    padded[:co] = weight
    return np.ascontiguousarray(padded.reshape(-1, r, ci, kh, kw).transpose(0, 2, 3, 4, 1))


def dense_conv2d_consts(weight: np.ndarray, bias: np.ndarray | None, tile: ConvTile) -> list[np.ndarray]:
    """The constant arguments after x and the residual: packed weight, bias (zeros when absent)."""
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    return [pack_weight(weight, tile), bias]
