"""Masked conv2d on the CPU: compute only the output pixels a data-sparsity mask keeps.

The tri-design detector multiplies the output of every backbone convolution by the patch mask,
nearest-resized to that feature map (`tridesign.models.video_detector`). These kernels compute
`relu?((conv(x) + bias) · m + residual?)` — the conv, its bias, the mask product, the block's
residual add and ReLU in one pass — and spend no multiply-accumulate on a pixel where `m` is 0:
that pixel's output is the epilogue of 0 (0, or the residual through the ReLU). The mask is a
runtime input, so one compiled kernel serves every frame; each call first scans it for the
active pixels.

Two kernels, by the weight they carry:

- `masked_conv2d_func` (dense weights) gathers the active pixels into a list and computes them
  in groups of P, R output channels at a time, R in vector registers (`tir_dense_conv`'s
  channel-vector tiles): one broadcast input value and one weight vector per FMA group. The
  groups take *any* P active pixels, so skipping is exact to the pixel, however small the mask's
  cells are at that resolution (8×8 pixels at stride 2, 1 at stride 16). Per MAC it ran at ~90 %
  of the dense register-tiled kernel on the track detector's layers (one core, Zen 4): a layer
  with 20 % of its pixels dropped took ~0.9× the dense kernel's time. It reads a zero-padded copy
  of the input (no stride phases: each pixel's taps are broadcast one by one).
- `masked_sparse_conv2d_func` (pruned weights, CSR over (ci, kh, kw) per output channel — 3×3
  patterns, connectivity and magnitude pruning alike) visits non-zero weights only, vectorised
  over runs of VL consecutive output positions (of a row; across rows for maps narrower than two
  runs, `RunLayout`). A run starts at an active pixel; the next one starts at the first active
  pixel after it, so each run holds at least one active pixel, and K runs are kept in registers
  (K independent FMA chains per non-zero). With no mask it computes every run of the map: the
  pruned FPN and head convolutions use it that way. It reads the stride-phase-split copy of
  `tir_padding.PhaseSplit`, so a run's inputs are contiguous for strided convolutions too.

Both copy only the input rows between the first and the last active pixel (plus the kernel's
halo); their inner loops have no bounds tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_conv import conv_offsets, conv_weight_csr, csr_consts
from tridesign.kernels.tir_padding import PhaseSplit


def row_copier(split: PhaseSplit):
    """A TVMScript macro `copy_rows(x, xq, lo, hi)` filling plane rows lo…hi of a batch-1 padded,
    phase-split copy (`PhaseSplit`'s layout), vectorised.

    Why not `PhaseSplit.copy_rows`: its clamped, bounds-tested load cannot be vectorised, and with
    row bounds only known at run time (they come from the mask) LLVM left a division in every
    element: copying a 16×48×88 input took 0.25 ms, longer than the convolution. Here the row
    test is one branch per plane row and the columns split at pack time into left padding, the
    image (a plain strided load) and right padding. Strides up to 2 (at most two phases a side).
    """
    c, h, w = split.channels, split.height, split.width
    (sh, sw), (ph, pw), (ah, aw) = split.stride, split.padding, split.used
    cols, offset = split.cols, split.offset
    if split.batch != 1 or ah > 2 or aw > 2:
        raise ValueError("row_copier handles batch 1 and strides up to 2")
    first = [max(0, -(-(pw - b) // sw)) for b in range(sw)]  # first column inside the image
    inside = [max(0, min(cols - 1, (w - 1 + pw - b) // sw) - first[b] + 1) for b in range(sw)]

    @T.macro
    def plane_row(x, xq, ch, i, a, b):
        if i * sh + a >= ph and i * sh + a < h + ph:
            if first[b] > 0:
                for j in T.vectorized(first[b]):
                    xq[offset(ch, a, b, i, j)] = T.float32(0)
            for j in T.vectorized(inside[b]):
                xq[offset(ch, a, b, i, first[b] + j)] = x[0, ch, i * sh + a - ph, (first[b] + j) * sw + b - pw]
            if cols > first[b] + inside[b]:
                for j in T.vectorized(cols - first[b] - inside[b]):
                    xq[offset(ch, a, b, i, first[b] + inside[b] + j)] = T.float32(0)
        else:
            for j in T.vectorized(cols):
                xq[offset(ch, a, b, i, j)] = T.float32(0)

    @T.macro
    def copy_rows(x, xq, lo, hi):
        # Zero-based loops throughout: a `range(start, stop)` whose start depended on the parallel
        # loop's variable computed wrong channels in a kernel of this module (TVM 0.27 lowering).
        for di in range(hi + 1 - lo):
            for ch in range(c):
                plane_row(x, xq, ch, lo + di, 0, 0)
                if aw > 1:
                    plane_row(x, xq, ch, lo + di, 0, 1)
                if ah > 1:
                    plane_row(x, xq, ch, lo + di, 1, 0)
                if ah > 1 and aw > 1:
                    plane_row(x, xq, ch, lo + di, 1, 1)

    return copy_rows


@dataclass(frozen=True)
class PixelTile:
    """R output channels (a multiple of the vector width where the layer allows) × P active pixels."""

    channels: int
    pixels: int

    @property
    def label(self) -> str:
        return f"c{self.channels}p{self.pixels}"


def pixel_tile(out_channels: int, floats: int) -> PixelTile:
    """The tile a layer runs with: 12 accumulator registers — two vectors of channels × 6 pixels, or
    one vector × 12 pixels where two vectors of channels do not divide the layer (16-channel layers
    on AVX-512). R always divides the output channels (no ragged channel group).
    """
    r = next(r for r in (2 * floats, floats, 8, 4, 2, 1) if out_channels % r == 0)
    return PixelTile(r, 12 // -(-r // floats))


def _epilogue(value, bias_v, mask_v, res_v, relu: bool, residual: bool):
    v = (value + bias_v) * mask_v
    if residual:
        v = v + res_v
    return T.max(v, T.float32(0)) if relu else v


def _fill(res_v, relu: bool, residual: bool):
    """An inactive pixel's output: the epilogue of a zero conv times a zero mask."""
    if not residual:
        return T.float32(0)
    return T.max(res_v, T.float32(0)) if relu else res_v


@functools.lru_cache(maxsize=256)
def masked_conv2d_func(
    x_shape: tuple[int, int, int, int],
    w_shape: tuple[int, int, int, int],
    geom: ConvGeometry,
    tile: PixelTile,
    relu: bool,
    residual: bool,
    cores: int = 1,
) -> KernelFunc:
    """Dense-weight masked conv: call as (x, mask [1,1,OH,OW], residual, packed weight, bias) -> y.

    One parallel region of `cores` slices. Each core scans the mask itself (a few µs, no barrier),
    then takes an equal share of the pixel groups (where the input outweighs the weights: each
    core copies only the input rows its pixels read) or of the channel groups (elsewhere: each core
    streams only its share of the weights). Without a residual, `residual` is a one-element
    placeholder that is never read.
    """
    nb, c, h, w = x_shape
    co, ci, kh, kw = w_shape
    if nb != 1 or geom.groups != 1 or ci != c:
        raise ValueError("masked_conv2d_func handles batch 1, ungrouped convolutions")
    rr, pp = tile.channels, tile.pixels
    if co % rr:
        raise ValueError(f"tile of {rr} channels does not divide {co} output channels")
    oh, ow = geom.output_hw(h, w, (kh, kw))
    pixels = oh * ow
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    # Plain zero padding, no stride phases: each pixel's taps are broadcast one by one, so a
    # strided conv needs no contiguous rows, only its own base offset.
    split = PhaseSplit.of(x_shape, (kh, kw), ConvGeometry((1, 1), geom.padding, geom.dilation))
    copy_rows, xp_at = row_copier(split), split.offset
    halo = (kh - 1) * dh
    groups = co // rr
    rows_outer = c * h * w >= co * c * kh * kw
    res_shape = (1, co, oh, ow) if residual else (1,)
    name = (
        f"masked_conv2d_{c}x{h}x{w}_{co}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}_t{tile.label}"
        f"{'_res' if residual else ''}{'_relu' if relu else ''}"
    )

    @T.macro
    def fill(yf, rf, o, lo, hi):
        for dq in range(hi - lo):
            yf[o * pixels + lo + dq] = _fill(rf[o * pixels + lo + dq] if residual else T.float32(0), relu, residual)

    lo = pp // 2  # accumulators in two buffers, each under TVM's 1 KiB stack limit (see tir_dense_conv)

    @T.macro
    def tap(acc, p0, count, cg, ic, ky, kx, base, xq, wp, run):
        for p in T.unroll(count):
            for r in T.vectorized(rr):
                if run:
                    acc[p, r] = acc[p, r] + wp[cg, ic, ky, kx, r] * xq[base[0] + T.Cast("int64", xp_at(ic, 0, 0, ky * dh, kx * dw + (p0 + p) * sw))]
                else:
                    acc[p, r] = acc[p, r] + wp[cg, ic, ky, kx, r] * xq[base[p0 + p] + T.Cast("int64", xp_at(ic, 0, 0, ky * dh, kx * dw))]

    @T.macro
    def taps(acc_lo, acc_hi, cg, base, xq, wp, run):
        for ic in range(c):
            for ky in T.unroll(kh):
                for kx in T.unroll(kw):
                    tap(acc_lo, 0, lo, cg, ic, ky, kx, base, xq, wp, run)
                    tap(acc_hi, lo, pp - lo, cg, ic, ky, kx, base, xq, wp, run)

    @T.macro
    def put(acc, p0, count, g, cg, n, pix, bias, mf, rf, yf):
        for p in T.unroll(count):
            if g * pp + p0 + p < n:
                for r in T.vectorized(rr):
                    yf[(cg * rr + r) * pixels + pix[g * pp + p0 + p]] = _epilogue(
                        acc[p, r], bias[cg * rr + r], mf[pix[g * pp + p0 + p]],
                        rf[(cg * rr + r) * pixels + pix[g * pp + p0 + p]] if residual else T.float32(0), relu, residual,
                    )

    @T.macro
    def compute(g, cg, n, pix, xq, wp, bias, mf, rf, yf):
        # Each pixel's offset into the padded input as int64, hoisted out of the tap loops: indexing
        # with pix[] there made LLVM rebuild and extract every pixel's int32 index per input channel.
        base = T.alloc_buffer((pp,), "int64")
        acc_lo = T.alloc_buffer((max(lo, 1), rr), "float32")
        acc_hi = T.alloc_buffer((pp - lo, rr), "float32")
        for p in T.unroll(pp):
            base[p] = T.Cast("int64", xp_at(0, 0, 0, pix[T.min(g * pp + p, n - 1)] // ow * sh, pix[T.min(g * pp + p, n - 1)] % ow * sw))
        for p in T.unroll(lo):
            for r in T.vectorized(rr):
                acc_lo[p, r] = T.float32(0)
        for p in T.unroll(pp - lo):
            for r in T.vectorized(rr):
                acc_hi[p, r] = T.float32(0)
        # A group of consecutive pixels of one row (most groups, where the mask keeps whole cells)
        # addresses its inputs from one register, a scattered group from one per pixel.
        if pix[T.min(g * pp + pp - 1, n - 1)] - pix[g * pp] == pp - 1 and pix[g * pp] % ow + pp <= ow:
            taps(acc_lo, acc_hi, cg, base, xq, wp, True)
        else:
            taps(acc_lo, acc_hi, cg, base, xq, wp, False)
        put(acc_lo, 0, lo, g, cg, n, pix, bias, mf, rf, yf)
        put(acc_hi, lo, pp - lo, g, cg, n, pix, bias, mf, rf, yf)

    @T.prim_func
    def kernel(
        x: T.Buffer((1, c, h, w), "float32"),
        m: T.Buffer((1, 1, oh, ow), "float32"),
        res: T.Buffer(res_shape, "float32"),
        wp: T.Buffer((groups, c, kh, kw, rr), "float32"),
        bias: T.Buffer((co,), "float32"),
        y: T.Buffer((1, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        mf = T.decl_buffer((pixels,), "float32", data=m.data)
        yf = T.decl_buffer((co * pixels,), "float32", data=y.data)
        rf = T.decl_buffer((co * pixels if residual else 1,), "float32", data=res.data)
        for t in T.parallel(cores):
            pix = T.alloc_buffer((pixels,), "int32")
            xq = T.alloc_buffer((split.total,), "float32")
            count = T.alloc_buffer((1,), "int32")
            count[0] = 0
            for q in range(pixels):
                if mf[q] != T.float32(0):
                    pix[count[0]] = q
                    count[0] = count[0] + 1
            n = count[0]
            ngroups = (n + pp - 1) // pp
            if rows_outer:
                per = (ngroups + cores - 1) // cores
                g0 = T.min(t * per, ngroups)
                g1 = T.min(t * per + per, ngroups)
                # This core owns output pixels [lo, hi): from its first active pixel to the next core's.
                lo = T.if_then_else(t == 0, 0, T.if_then_else(g0 * pp < n, pix[T.min(g0 * pp, pixels - 1)], pixels))
                hi = T.if_then_else(g1 * pp < n, pix[T.min(g1 * pp, pixels - 1)], pixels)
                for o in range(co):
                    fill(yf, rf, o, lo, hi)
                if g0 < g1:
                    # Bound once: a bound read from `pix` inside the copy's loops stopped LLVM
                    # from vectorising them (it cannot tell `pix` from `xq`).
                    r0 = pix[g0 * pp] // ow * sh
                    r1 = pix[T.min(g1 * pp, n) - 1] // ow * sh + halo
                    copy_rows(x, xq, r0, r1)
                    for dg in range(g1 - g0):
                        for cg in range(groups):
                            compute(g0 + dg, cg, n, pix, xq, wp, bias, mf, rf, yf)
            else:
                per = (groups + cores - 1) // cores
                c0 = T.min(t * per, groups)
                c1 = T.min(t * per + per, groups)
                for do in range((c1 - c0) * rr):
                    fill(yf, rf, c0 * rr + do, 0, pixels)
                if n > 0 and c0 < c1:
                    r0 = pix[0] // ow * sh
                    r1 = pix[n - 1] // ow * sh + halo
                    copy_rows(x, xq, r0, r1)
                    for dc in range(c1 - c0):
                        for g in range(ngroups):
                            compute(g, c0 + dc, n, pix, xq, wp, bias, mf, rf, yf)

    signature = ("masked_conv2d", x_shape, w_shape, geom, tile, relu, residual, cores)
    return KernelFunc(kernel, signature, (1, co, oh, ow))


def masked_conv2d_consts(weight: np.ndarray, bias: np.ndarray | None, tile: PixelTile) -> list[np.ndarray]:
    """Packed weight [CO/R, CI, KH, KW, R] (the R weights of one tap adjacent) and bias."""
    co, ci, kh, kw = weight.shape
    r = tile.channels
    packed = np.ascontiguousarray(np.asarray(weight, np.float32).reshape(co // r, r, ci, kh, kw).transpose(0, 2, 3, 4, 1))
    bias = np.zeros(co, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    return [packed, bias]


@dataclass(frozen=True)
class RunTile:
    """VL consecutive output pixels per run (a vector of the row), up to K runs in registers at once."""

    width: int
    runs: int

    @property
    def label(self) -> str:
        return f"v{self.width}k{self.runs}"


def run_tile(floats: int) -> RunTile:
    """One vector per run and up to 8 runs (8 independent FMA chains per non-zero weight)."""
    return RunTile(floats, 8)


@dataclass(frozen=True)
class RunLayout:
    """Where the runs of a CSR conv lie: positions `oy · cols + ox` on the padded input's row pitch.

    `wide` runs go on across rows (through the padding columns) and serve maps narrower than they
    are: a 6×11 map takes 5 runs of 16 wide, not 6 mostly empty ones (tir_conv's wide rows). They
    store lane by lane, so only maps narrower than two runs go wide, and only where that computes
    fewer lanes for the full map. A group holds `group` runs: K, or fewer where the whole map has
    fewer runs.
    """

    out_hw: tuple[int, int]
    cols: int
    width: int
    wide: bool
    group: int

    @classmethod
    def of(cls, x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry, tile: RunTile) -> RunLayout:
        oh, ow = geom.output_hw(x_shape[2], x_shape[3], w_shape[2:])
        cols = PhaseSplit.of(x_shape, w_shape[2:], geom).cols
        vl = tile.width
        rows_lanes = oh * -(-ow // vl) * vl
        wide_lanes = -(-((oh - 1) * cols + ow) // vl) * vl
        wide = ow < 2 * vl and wide_lanes < rows_lanes
        most = wide_lanes // vl if wide else rows_lanes // vl
        return cls((oh, ow), cols, vl, wide, max(1, min(tile.runs, most)))

    @property
    def max_runs(self) -> int:
        oh, ow = self.out_hw
        return -(-((oh - 1) * self.cols + ow) // self.width) if self.wide else oh * -(-ow // self.width)

    def starts(self, pixel_mask: np.ndarray | None) -> np.ndarray:
        """The run positions the kernel's own scan finds, sorted (numpy, so the executor can count
        what the kernel computes every frame): each run starts at the first active pixel at or
        after the end of the previous run (of its row, unless wide); without a mask, every run of
        the map. Vectorised over rows: a row's starts are the orbit of s → next active at s + VL."""
        oh, ow = self.out_hw
        vl = self.width
        if pixel_mask is None:
            if self.wide:
                return np.arange(self.max_runs, dtype=np.int64) * vl
            return (np.arange(oh)[:, None] * self.cols + np.arange(0, ow, vl)[None, :]).ravel()
        active = np.zeros((oh, self.cols), bool)
        active[:, :ow] = np.asarray(pixel_mask, bool).reshape(oh, ow)
        lines = active.reshape(1, -1) if self.wide else active  # one line of positions, or one per row
        count, length = lines.shape
        never = length + vl  # past every line: "no active pixel from here on"
        ahead = np.where(lines, np.arange(length), never)
        ahead = np.minimum.accumulate(ahead[:, ::-1], axis=1)[:, ::-1]  # next active pixel at or after p
        ahead = np.concatenate([ahead, np.full((count, vl + 1), never)], axis=1)
        line = np.arange(count)
        found = []
        at = ahead[:, 0]
        while (alive := at < length).any():
            found.append(line[alive] * length + at[alive])
            at = np.where(alive, ahead[line, np.minimum(at + vl, length)], never)
        return np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)

    def computed_pixels(self, pixel_mask: np.ndarray | None) -> int:
        """Output positions the kernel computes per output channel: whole groups of whole runs."""
        runs = len(self.starts(pixel_mask))
        return -(-runs // self.group) * self.group * self.width


@functools.lru_cache(maxsize=256)
def masked_sparse_conv2d_func(
    x_shape: tuple[int, int, int, int],
    w_shape: tuple[int, int, int, int],
    geom: ConvGeometry,
    tile: RunTile,
    masked: bool,
    relu: bool,
    residual: bool,
) -> KernelFunc:
    """CSR-weight (masked) conv: call as (x, mask, residual, indptr, offsets, values, bias) -> y.

    The non-zero count is symbolic, so every pruning of a layer shares one binary. The output
    channels are split across cores; the mask scan runs before, then one parallel region copies the
    input rows and fills the output.
    Without a mask (`masked=False`) the `mask` argument is a one-element placeholder and every run
    of the map is computed; without a residual the same holds for `residual`.
    """
    nb, c, h, w = x_shape
    co, cig, kh, kw = w_shape
    if nb != 1 or geom.groups != 1:
        raise ValueError("masked_sparse_conv2d_func handles batch 1, ungrouped convolutions")
    layout = RunLayout.of(x_shape, w_shape, geom, tile)
    oh, ow = layout.out_hw
    pixels = oh * ow
    vl, kk, wide, max_runs = tile.width, layout.group, layout.wide, layout.max_runs
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    split = PhaseSplit.of(x_shape, (kh, kw), geom)
    copy_rows, cols = row_copier(split), split.cols
    halo = (kh - 1) * dh // sh
    per_row = -(-ow // vl)
    mask_shape = (1, 1, oh, ow) if masked else (1,)
    res_shape = (1, co, oh, ow) if residual else (1,)
    slack = vl + cols  # a run may read past its row or the map (those lanes are never stored)
    name = (
        f"masked_sparse_conv2d_{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}_t{tile.label}"
        f"{'_wide' if wide else ''}{'_mask' if masked else ''}{'_res' if residual else ''}{'_relu' if relu else ''}"
    )

    @T.macro
    def put(acc, k, q, j, o, bias, mf, rf, yf):
        # Output pixel q (flat) from lane j of run k. Every lane of a run is stored: where the mask
        # is 0 the epilogue gives the fill value.
        yf[o * pixels + q] = _epilogue(
            acc[k, j], bias[o], mf[q] if masked else T.float32(1), rf[o * pixels + q] if residual else T.float32(0), relu, residual,
        )

    @T.macro
    def store(acc, k, start, o, bias, mf, rf, yf):
        if wide:
            for j in range(vl):
                if (start + j) % cols < ow and (start + j) // cols < oh:
                    put(acc, k, (start + j) // cols * ow + (start + j) % cols, j, o, bias, mf, rf, yf)
        elif start % cols + vl <= ow:
            for j in T.vectorized(vl):
                put(acc, k, start // cols * ow + start % cols + j, j, o, bias, mf, rf, yf)
        else:
            for j in range(vl):
                if start % cols + j < ow:
                    put(acc, k, start // cols * ow + start % cols + j, j, o, bias, mf, rf, yf)

    @T.prim_func
    def kernel(
        x: T.Buffer((1, c, h, w), "float32"),
        m: T.Buffer(mask_shape, "float32"),
        res: T.Buffer(res_shape, "float32"),
        indptr: T.Buffer((co + 1,), "int32"),
        o_handle: T.handle,
        d_handle: T.handle,
        bias: T.Buffer((co,), "float32"),
        y: T.Buffer((1, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnz = T.int32()
        offsets = T.match_buffer(o_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        mf = T.decl_buffer((pixels if masked else 1,), "float32", data=m.data)
        yf = T.decl_buffer((co * pixels,), "float32", data=y.data)
        rf = T.decl_buffer((co * pixels if residual else 1,), "float32", data=res.data)
        starts = T.alloc_buffer((max_runs,), "int32")
        xq = T.alloc_buffer((split.total + slack,), "float32")
        count = T.alloc_buffer((1,), "int32")
        count[0] = 0
        starts[0] = 0
        if masked:
            nxt = T.alloc_buffer((1,), "int32")
            nxt[0] = 0
            for oy in range(oh):
                if not wide:
                    nxt[0] = oy * cols
                for ox in range(ow):
                    if oy * cols + ox >= nxt[0] and mf[oy * ow + ox] != T.float32(0):
                        starts[count[0]] = oy * cols + ox
                        count[0] = count[0] + 1
                        nxt[0] = oy * cols + ox + vl
        else:
            for r in range(max_runs):
                starts[r] = r * vl if wide else r // per_row * cols + r % per_row * vl
            count[0] = max_runs
        n = count[0]
        r0 = starts[0] // cols
        r1 = T.min((starts[T.max(n - 1, 0)] + vl - 1) // cols + halo, split.rows - 1)
        ncopy = T.if_then_else(n > 0, r1 - r0 + 1, 0)
        # One parallel region copies the input rows the runs read and fills the output rows (the
        # pixels no run covers keep the fill value).
        for i in T.parallel(T.max(ncopy, oh if masked else 0)):
            if i < ncopy:
                copy_rows(x, xq, r0 + i, r0 + i)
            if masked:
                if i < oh:
                    for o in range(co):
                        for j in T.vectorized(ow):
                            yf[o * pixels + i * ow + j] = _fill(rf[o * pixels + i * ow + j] if residual else T.float32(0), relu, residual)
        for j in range(slack):
            xq[split.total + j] = T.float32(0)
        # Output channels split across cores, each running every group of K runs on its non-zeros
        # (measured faster than groups outside and channels inside, which reuses the input window
        # in L1 but pays each group's set-up per channel: 0.054 against 0.085 ms on 32×24×44).
        for o in T.parallel(co):
            for g in range((n + kk - 1) // kk):
                # int64 offsets hoisted out of the non-zero loop (see masked_conv2d_func)
                base = T.alloc_buffer((kk,), "int64")
                acc = T.alloc_buffer((kk, vl), "float32")
                for k in T.unroll(kk):
                    base[k] = T.Cast("int64", starts[T.min(g * kk + k, n - 1)])
                    for j in T.vectorized(vl):
                        acc[k, j] = T.float32(0)
                for e in range(indptr[o], indptr[o + 1]):
                    for k in T.unroll(kk):
                        for j in T.vectorized(vl):
                            acc[k, j] = acc[k, j] + data[e] * xq[T.Cast("int64", offsets[e]) + base[k] + j]
                for k in T.unroll(kk):
                    if g * kk + k < n:
                        store(acc, k, starts[g * kk + k], o, bias, mf, rf, yf)

    signature = ("masked_sparse_conv2d", x_shape, w_shape, geom, tile, masked, relu, residual)
    return KernelFunc(kernel, signature, (1, co, oh, ow))


def masked_sparse_conv2d_consts(
    weight: np.ndarray, bias: np.ndarray | None, x_shape: tuple[int, int, int, int], geom: ConvGeometry
) -> list[np.ndarray]:
    """indptr, per-non-zero offsets into the padded phase-split input, values, bias."""
    csr = conv_weight_csr(weight)
    indptr, _, data = csr_consts(csr)
    offsets = conv_offsets(csr, x_shape, weight.shape, geom) if csr.nnz else np.zeros(1, np.int32)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    return [indptr, offsets, data, bias]
