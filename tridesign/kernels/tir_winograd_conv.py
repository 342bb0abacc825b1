"""3×3 stride-1 conv2d on the CPU by Winograd F(2×2, 3×3): 2.25× fewer multiplies than direct.

Why next to the direct kernel (`tir_dense_conv`): ResNet's 3×3 layers on 56×56 … 14×14 maps are
most of its time, and the direct kernel runs them near the FMA peak already, so only less
arithmetic makes them faster. Each 2×2 output tile is computed from a 4×4 input tile d and the transformed
weight U = G g Gᵀ (packed at compile time) as Y = Aᵀ[(Bᵀ d B) ⊙ U]A; summed over input channels,
the ⊙ becomes 16 independent matrix products M[ξ] = U[ξ]ᵀ · V[ξ] (ξ: one of the 16 tile
positions), which run on the same register tiling as the direct kernel: R output channels ×
VW tiles accumulated in vector registers, one broadcast weight and one contiguous vector of V per FMA.

Stages (one PrimFunc, each split across cores): the padded copy (`tir_padding`, split by column
parity so that the 4×4 inputs of consecutive tiles are contiguous), the input transform V[ξ, c, p],
the 16 products M[ξ, k, p], the output transform with bias, residual add and ReLU. Both transforms
are vectorised over the tiles of a row (plain loops were left scalar by LLVM: up to 2.2× slower
layers); the output transform's stores are strided by 2. The weights grow by 16/9 and the
transforms are fixed work per channel, so layers with few channels or tiles stay on the direct
kernel (`conv_tiles.default_tile`). Only even output sizes are handled (every ResNet map is even).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_padding import PhaseSplit

# F(2×2, 3×3) transforms (Lavin & Gray, 2016): G packs the weights; B_T and A_T are what the
# expanded `_v` and `_y` below compute (tests/kernels/test_dense_conv.py checks them against these)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_applies(x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry) -> bool:
    """3×3, stride 1, padding 1, no dilation or groups, even map: what this kernel computes."""
    _, c, h, w = x_shape
    return (
        tuple(w_shape[2:]) == (3, 3)
        and w_shape[1] == c
        and geom.stride == (1, 1)
        and geom.padding == (1, 1)
        and geom.dilation == (1, 1)
        and geom.groups == 1
        and h % 2 == 0
        and w % 2 == 0
    )


def _v(d, a: int, b: int):
    """(Bᵀ d B)[a, b] from d(i, j), the 4×4 input tile."""

    def t(i: int, j: int):
        return (d(0, j) - d(2, j), d(1, j) + d(2, j), d(2, j) - d(1, j), d(1, j) - d(3, j))[i]

    return (t(a, 0) - t(a, 2), t(a, 1) + t(a, 2), t(a, 2) - t(a, 1), t(a, 1) - t(a, 3))[b]


def _y(m, i: int, j: int):
    """(Aᵀ m A)[i, j] from m(a, b), the 4×4 product tile."""

    def r(a: int):
        return (m(a, 0) + m(a, 1) + m(a, 2), m(a, 1) - m(a, 2) - m(a, 3))[j]

    return (r(0) + r(1) + r(2), r(1) - r(2) - r(3))[i]


def winograd_conv2d_func(
    x_shape: tuple[int, int, int, int],
    w_shape: tuple[int, int, int, int],
    rows: int,
    tiles: int,
    relu: bool,
    residual: bool,
    across_channels: bool = False,
) -> KernelFunc:
    """The kernel for one layer: call as (x, residual, packed weight, bias) -> y, like `dense_conv2d_func`.

    `rows` output channels × `tiles` output tiles are accumulated in registers in the products:
    vectors along the tiles, one broadcast weight per FMA; or with `across_channels` vectors along
    the channels (`rows` a multiple of the vector), one broadcast element of V per FMA and scalar
    stores of the products. The second loads fewer vectors per FMA (6×16 tiles: 2 weight vectors
    and 6 broadcasts per 12 FMAs against 2 + 4 per 8), and the tile count of a small map need not
    be padded to whole vectors (49 tiles of a 14×14 map: 54 in runs of 6 against 64 in vectors of
    16). Measured alone on a Zen 3 (AVX2) VM, products only: 71–73 against 58–63 GMAC/s; layers
    56×56×64 1.29 → 1.15 ms, 28×28×128 1.36 → 0.88, 14×14×256 1.51 → 1.18.
    """
    nb, c, h, w = x_shape
    k = w_shape[0]
    geom = ConvGeometry((1, 1), (1, 1))
    if not winograd_applies(x_shape, w_shape, geom):
        raise ValueError("winograd_conv2d_func handles 3x3 stride-1 padding-1 convolutions of even maps only")
    if k % rows:
        raise ValueError(f"{k} output channels are not a multiple of {rows}")
    th, tw = h // 2, w // 2
    n_tiles = nb * th * tw
    padded = -(-n_tiles // tiles) * tiles  # the products run over whole register tiles
    spare = max(padded - n_tiles, 1)  # a divisor below; the loop using it runs 0 times without spare tiles
    # the padded input split by column parity: column 2·tx + j of tile tx is at (phase j % 2,
    # column tx + j // 2), so the input transform reads contiguous vectors of tiles
    split = PhaseSplit.of(x_shape, (3, 3), ConvGeometry((1, 2), (1, 1)))
    copy, at = split.copy(), split.offset
    # the accumulators acc[i, j]: [tile, channel] with the vectors across channels, else [channel,
    # tile]; as two buffers, each under TVM's 1 KiB stack limit (see tir_dense_conv)
    acc_rows, acc_cols = (tiles, rows) if across_channels else (rows, tiles)
    lo = acc_rows // 2
    res_shape = (nb, k, h, w) if residual else (1,)
    name = (
        f"winograd_conv2d_{nb}x{c}x{h}x{w}_{k}_t{'c' if across_channels else ''}{rows}x{tiles}"
        f"{'_res' if residual else ''}{'_relu' if relu else ''}"
    )

    def v_at(xi, ci, p):
        return (xi * c + ci) * padded + p

    def m_at(xi, ko, p):
        return (xi * k + ko) * padded + p

    def vin(xp, nt, ci, tx, a, b):
        return _v(lambda i, j: xp[at(nt // th * c + ci, 0, j % 2, nt % th * 2 + i, tx + j // 2)], a, b)

    def yout(mm, ko, p, i, j):
        return _y(lambda a, b: mm[m_at(a * 4 + b, ko, p)], i, j)

    def weight(up, xi, grp, ci, r):
        return up[((xi * (k // rows) + grp) * c + ci) * rows + r]

    # Vectors along the tiles: acc[channel, tile].
    @T.macro
    def accumulate(acc, r0, nr, up, vv, xi, grp, p0, ci):
        for r in T.unroll(nr):
            for j in T.vectorized(tiles):
                acc[r, j] = acc[r, j] + weight(up, xi, grp, ci, r0 + r) * vv[v_at(xi, ci, p0 + j)]

    @T.macro
    def spill_rows(acc, r0, nr, mm, xi, grp, p0):
        for r in T.unroll(nr):
            for j in T.vectorized(tiles):
                mm[m_at(xi, grp * rows + r0 + r, p0 + j)] = acc[r, j]

    # Vectors along the channels: acc[tile, channel].
    @T.macro
    def accumulate_across(acc, q0, nq, up, vv, xi, grp, p0, ci):
        for q in T.unroll(nq):
            for r in T.vectorized(rows):
                acc[q, r] = acc[q, r] + weight(up, xi, grp, ci, r) * vv[v_at(xi, ci, p0 + q0 + q)]

    @T.macro
    def spill_across(acc, q0, nq, mm, xi, grp, p0):
        for q in T.unroll(nq):
            for r in T.unroll(rows):
                mm[m_at(xi, grp * rows + r, p0 + q0 + q)] = acc[q, r]

    products, spill = (accumulate_across, spill_across) if across_channels else (accumulate, spill_rows)

    @T.macro
    def zero(acc, count, width):
        for i in T.unroll(count):
            for j in T.vectorized(width):
                acc[i, j] = T.float32(0)

    @T.macro
    def finish(mm, res, bias, y, n, ko, ty, tx, i, j):
        if residual:
            if relu:
                y[n, ko, ty * 2 + i, tx * 2 + j] = T.max(
                    yout(mm, ko, (n * th + ty) * tw + tx, i, j) + bias[ko] + res[n, ko, ty * 2 + i, tx * 2 + j], T.float32(0)
                )
            else:
                y[n, ko, ty * 2 + i, tx * 2 + j] = yout(mm, ko, (n * th + ty) * tw + tx, i, j) + bias[ko] + res[n, ko, ty * 2 + i, tx * 2 + j]
        elif relu:
            y[n, ko, ty * 2 + i, tx * 2 + j] = T.max(yout(mm, ko, (n * th + ty) * tw + tx, i, j) + bias[ko], T.float32(0))
        else:
            y[n, ko, ty * 2 + i, tx * 2 + j] = yout(mm, ko, (n * th + ty) * tw + tx, i, j) + bias[ko]

    @T.prim_func
    def kernel(
        x: T.Buffer((nb, c, h, w), "float32"),
        res: T.Buffer(res_shape, "float32"),
        up: T.Buffer((16 * k * c,), "float32"),
        bias: T.Buffer((k,), "float32"),
        y: T.Buffer((nb, k, h, w), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        xp = T.alloc_buffer((split.total,), "float32")
        vv = T.alloc_buffer((16 * c * padded,), "float32")
        mm = T.alloc_buffer((16 * k * padded,), "float32")
        copy(x, xp)
        for nt in T.parallel(nb * th):
            for ci in range(c):
                for tx in T.vectorized(tw):
                    vv[v_at(0, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 0, 0)
                    vv[v_at(1, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 0, 1)
                    vv[v_at(2, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 0, 2)
                    vv[v_at(3, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 0, 3)
                    vv[v_at(4, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 1, 0)
                    vv[v_at(5, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 1, 1)
                    vv[v_at(6, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 1, 2)
                    vv[v_at(7, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 1, 3)
                    vv[v_at(8, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 2, 0)
                    vv[v_at(9, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 2, 1)
                    vv[v_at(10, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 2, 2)
                    vv[v_at(11, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 2, 3)
                    vv[v_at(12, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 3, 0)
                    vv[v_at(13, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 3, 1)
                    vv[v_at(14, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 3, 2)
                    vv[v_at(15, ci, nt * tw + tx)] = vin(xp, nt, ci, tx, 3, 3)
        for q in range(16 * c * (padded - n_tiles)):  # tiles past the last one: zeros, not stale memory
            vv[v_at(q // (c * spare), q // spare % c, n_tiles + q % spare)] = T.float32(0)
        for blk in T.parallel(16 * (k // rows) * (padded // tiles)):
            xi = T.meta_var(blk // ((k // rows) * (padded // tiles)))
            grp = T.meta_var(blk // (padded // tiles) % (k // rows))
            p0 = T.meta_var(blk % (padded // tiles) * tiles)
            acc_lo = T.alloc_buffer((max(lo, 1), acc_cols), "float32")
            acc_hi = T.alloc_buffer((acc_rows - lo, acc_cols), "float32")
            zero(acc_lo, lo, acc_cols)
            zero(acc_hi, acc_rows - lo, acc_cols)
            for ci in range(c):
                products(acc_lo, 0, lo, up, vv, xi, grp, p0, ci)
                products(acc_hi, lo, acc_rows - lo, up, vv, xi, grp, p0, ci)
            spill(acc_lo, 0, lo, mm, xi, grp, p0)
            spill(acc_hi, lo, acc_rows - lo, mm, xi, grp, p0)
        for nk in T.parallel(nb * k):
            for ty in range(th):
                for tx in T.vectorized(tw):
                    finish(mm, res, bias, y, nk // k, nk % k, ty, tx, 0, 0)
                    finish(mm, res, bias, y, nk // k, nk % k, ty, tx, 0, 1)
                    finish(mm, res, bias, y, nk // k, nk % k, ty, tx, 1, 0)
                    finish(mm, res, bias, y, nk // k, nk % k, ty, tx, 1, 1)

    signature = ("winograd_conv2d", x_shape, w_shape, rows, tiles, relu, residual, across_channels)
    return KernelFunc(kernel, signature, (nb, k, h, w))


def pack_winograd_weight(weight: np.ndarray, rows: int) -> np.ndarray:
    """[K, C, 3, 3] → U = G g Gᵀ laid out [16, K/rows, C, rows], flat: the `rows` weights of one
    (ξ, c) side by side, as the products broadcast them."""
    k, c = weight.shape[:2]
    u = np.einsum("ai,kcij,bj->abkc", G, weight.astype(np.float64), G).reshape(16, k // rows, rows, c)
    return np.ascontiguousarray(u.transpose(0, 1, 3, 2), dtype=np.float32).reshape(-1)


def winograd_conv2d_consts(weight: np.ndarray, bias: np.ndarray | None, rows: int) -> list[np.ndarray]:
    """The constant arguments after x and the residual: transformed packed weight, bias (zeros when absent)."""
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    return [pack_winograd_weight(weight, rows), bias]
