"""Plain numpy references for every kernel: the oracles the property tests compare against.

They favour obviously-correct over fast. The sparse-matmul references walk the *packed* arrays
(not `unpack()`), so a test checks the format and the kernel independently; the conv reference
is a direct dense convolution, independent of any sparse packing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tridesign.kernels.formats import BSR, CSR, NM, TileMask


@dataclass(frozen=True)
class ConvGeometry:
    """The attributes of a 2-D convolution, as ONNX Conv (symmetric padding) and the zoo use them."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def output_hw(self, height: int, width: int, kernel: tuple[int, int]) -> tuple[int, int]:
        oh = (height + 2 * self.padding[0] - self.dilation[0] * (kernel[0] - 1) - 1) // self.stride[0] + 1
        ow = (width + 2 * self.padding[1] - self.dilation[1] * (kernel[1] - 1) - 1) // self.stride[1] + 1
        return oh, ow


def csr_matmul(a: CSR, x: np.ndarray) -> np.ndarray:
    """A @ x for a CSR A and a dense x [K, N]."""
    out = np.zeros((a.shape[0], x.shape[1]), dtype=np.float64)
    for row in range(a.shape[0]):
        lo, hi = a.indptr[row], a.indptr[row + 1]
        out[row] = a.data[lo:hi].astype(np.float64) @ x[a.indices[lo:hi]]
    return out.astype(np.float32)


def bsr_matmul(a: BSR, x: np.ndarray) -> np.ndarray:
    """A @ x for a BSR A [M, K] and a dense x [K, N]."""
    br, bc = a.block
    mp, kp = a.padded_shape
    xp = np.zeros((kp, x.shape[1]), dtype=np.float64)
    xp[: x.shape[0]] = x
    out = np.zeros((mp, x.shape[1]), dtype=np.float64)
    for brow in range(mp // br):
        for p in range(a.indptr[brow], a.indptr[brow + 1]):
            col = a.indices[p] * bc
            out[brow * br : (brow + 1) * br] += a.data[p].astype(np.float64) @ xp[col : col + bc]
    return out[: a.shape[0]].astype(np.float32)


def nm_matmul(a: NM, x: np.ndarray) -> np.ndarray:
    """A @ x for an N:M-compressed A [M, K] and a dense x [K, N]."""
    rows, k = a.shape
    cols = (np.arange(a.values.shape[1]) // a.n) * a.m + a.indices.astype(np.int64)
    xp = np.zeros((int(cols.max(initial=0)) + 1 if cols.size else 0, x.shape[1]), dtype=np.float64)
    xp[: min(k, xp.shape[0])] = x[: xp.shape[0]]
    out = np.zeros((rows, x.shape[1]), dtype=np.float64)
    for r in range(rows):
        out[r] = a.values[r].astype(np.float64) @ xp[cols[r]]
    return out.astype(np.float32)


def conv2d(x: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Dense NCHW conv2d (no bias) with stride, symmetric padding, dilation and groups."""
    n, c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    g = geom.groups
    oh, ow = geom.output_hw(h, wd, (kh, kw))
    ph, pw = geom.padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=np.float64)
    xp[:, :, ph : ph + h, pw : pw + wd] = x
    sh, sw = geom.stride
    dh, dw = geom.dilation
    out = np.zeros((n, co, oh, ow), dtype=np.float64)
    cog = co // g
    for gi in range(g):
        xs = xp[:, gi * cig : (gi + 1) * cig]
        ws = w[gi * cog : (gi + 1) * cog].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
                out[:, gi * cog : (gi + 1) * cog] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out.astype(np.float32)


def tile_conv2d(
    x: np.ndarray, w: np.ndarray, geom: ConvGeometry, mask: TileMask, previous: np.ndarray
) -> np.ndarray:
    """Exact conv on the active output tiles, `previous` elsewhere (the data-sparsity contract)."""
    fresh = conv2d(x, w, geom)
    keep = mask.unpack()[None, None]
    return np.where(keep, fresh, previous).astype(np.float32)
