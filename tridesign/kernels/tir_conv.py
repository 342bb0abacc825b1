"""Sparse conv2d on the CPU: a direct convolution that visits only the non-zero weights.

The weight [CO, CI/g, KH, KW] is stored as CSR with one row per output channel and columns over
(ci, kh, kw) -- any pattern works (unstructured, 3×3 patterns, channel or block pruning). For
every non-zero weight the kernel adds `w · X[ci]` shifted by (kh, kw) to the output plane of its
channel: no im2col buffer, no work on zeros, and the inner loop is a contiguous (stride 1) or
row of the input (strided convs read a stride-phase-split copy), vectorised over output columns.

Schedule: (batch, output channel) pairs are split across cores; each keeps its output plane in a
private accumulator (≤ 50 KB for the zoo's layers, L1/L2 resident). The input is copied once into
a zero-padded, phase-split buffer so the inner loop needs no bounds checks. Strides, symmetric padding,
dilation and groups follow ONNX Conv, which covers the zoo (ResNet stems and downsamples,
depthwise and grouped convs).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.formats import CSR
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import BoundKernel, KernelFunc


def conv_weight_csr(weight: np.ndarray) -> CSR:
    """Pack a conv weight [CO, CI/g, KH, KW] as CSR rows over flattened (ci, kh, kw)."""
    return CSR.pack(np.asarray(weight, np.float32).reshape(weight.shape[0], -1))


def sparse_conv2d_func(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry
) -> KernelFunc:
    """The kernel for one layer signature; the non-zero count is symbolic."""
    nb, c, h, w = x_shape
    co, cig, kh, kw = w_shape
    oh, ow = geom.output_hw(h, w, (kh, kw))
    (sh, sw), (ph, pw), (dh, dw), g = geom.stride, geom.padding, geom.dilation, geom.groups
    # The padded input is split into stride phases (xp[a, b, i, j] = padded[i*sh + a, j*sw + b]) so
    # that strided convs read contiguous rows too; for stride 1 this is just the padded input.
    hq, wq = -(-(h + 2 * ph) // sh), -(-(w + 2 * pw) // sw)
    cog = co // g
    kk = kh * kw
    name = f"sparse_conv2d_{nb}x{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}g{g}"

    @T.prim_func
    def kernel(
        x: T.Buffer((nb, c, h, w), "float32"),
        indptr: T.Buffer((co + 1,), "int32"),
        i_handle: T.handle,
        d_handle: T.handle,
        y: T.Buffer((nb, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnz = T.int32()
        indices = T.match_buffer(i_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        xp = T.alloc_buffer((nb, c, sh, sw, hq, wq), "float32")
        for nc in T.parallel(nb * c):
            for a in range(sh):
                for b in range(sw):
                    for i in range(hq):
                        for j in T.vectorized(wq):
                            xp[nc // c, nc % c, a, b, i, j] = T.if_then_else(
                                i * sh + a >= ph and i * sh + a < h + ph and j * sw + b >= pw and j * sw + b < w + pw,
                                x[
                                    nc // c,
                                    nc % c,
                                    T.min(T.max(i * sh + a - ph, 0), h - 1),
                                    T.min(T.max(j * sw + b - pw, 0), w - 1),
                                ],
                                T.float32(0),
                            )
        for no in T.parallel(nb * co):
            acc = T.alloc_buffer((oh, ow), "float32")
            for i in range(oh):
                for j in T.vectorized(ow):
                    acc[i, j] = T.float32(0)
            for q in range(indptr[no % co + 1] - indptr[no % co]):
                p = indptr[no % co] + q
                col = indices[p]
                ci = (no % co) // cog * cig + col // kk
                rr = col % kk // kw * dh
                ss = col % kw * dw
                for i in range(oh):
                    for j in T.vectorized(ow):
                        acc[i, j] = acc[i, j] + data[p] * xp[
                            no // co, ci, rr % sh, ss % sw, i + rr // sh, j + ss // sw
                        ]
            for i in range(oh):
                for j in T.vectorized(ow):
                    y[no // co, no % co, i, j] = acc[i, j]

    return KernelFunc(kernel, ("sparse_conv2d", x_shape, w_shape, geom), (nb, co, oh, ow))


def csr_consts(weight: CSR) -> list[np.ndarray]:
    """The kernel's weight arguments; an all-zero weight gets one harmless zero entry."""
    if weight.nnz == 0:
        return [weight.indptr, np.zeros(1, np.int32), np.zeros(1, np.float32)]
    return [weight.indptr, weight.indices, weight.data]


def bind_sparse_conv2d(
    weight: np.ndarray, x_shape: tuple[int, int, int, int], geom: ConvGeometry, target=None
) -> BoundKernel:
    """A ready-to-call sparse conv for a (masked) dense weight [CO, CI/g, KH, KW]."""
    kf = sparse_conv2d_func(tuple(x_shape), tuple(weight.shape), geom)
    return BoundKernel(kf, csr_consts(conv_weight_csr(weight)), target)
