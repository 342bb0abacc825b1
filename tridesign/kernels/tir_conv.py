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
from tridesign.kernels.tir_padding import PhaseSplit

VL = 32  # accumulator chunk (floats): two AVX-512 / four AVX2 registers
WIDE_MAX_OW = 8  # measured: wide rows win at 7×7, lose at 14×14 and above (benchmarks/sparse_kernels.py)


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
    # The padded input is split into stride phases so that strided convs read contiguous rows too;
    # for stride 1 this is just the padded input.
    split = PhaseSplit.of(x_shape, (kh, kw), geom)
    copy, wq, plane = split.copy(), split.cols, split.plane
    # Narrow maps (7×7) fill few vector lanes row by row, so there the output rows are computed
    # "wide" (wq columns, the padded input's row length): one output plane becomes a contiguous run
    # of oh*wq positions, worked in register-sized chunks; the extra columns are dropped.
    # Wider maps go row by row, which streams the input rows better.
    wide = ow <= WIDE_MAX_OW
    span = oh * wq
    chunks = -(-span // VL)
    total = split.total
    name = f"sparse_conv2d_{nb}x{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}g{g}"

    @T.prim_func
    def kernel(
        x: T.Buffer((nb, c, h, w), "float32"),
        indptr: T.Buffer((co + 1,), "int32"),
        o_handle: T.handle,
        d_handle: T.handle,
        y: T.Buffer((nb, co, oh, ow), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnz = T.int32()
        offsets = T.match_buffer(o_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        xp = T.alloc_buffer((total + chunks * VL + plane,), "float32")
        copy(x, xp)
        for t in range(chunks * VL + plane):
            xp[total + t] = T.float32(0)
        if wide:
            for no in T.parallel(nb * co):
                acc = T.alloc_buffer((VL,), "float32")
                for ch in range(chunks):
                    for t in T.vectorized(VL):
                        acc[t] = T.float32(0)
                    # Four non-zeros per pass over the accumulator chunk (kept in registers).
                    for q in range((indptr[no % co + 1] - indptr[no % co]) // 4):
                        for t in T.vectorized(VL):
                            acc[t] = (
                                acc[t]
                                + data[indptr[no % co] + q * 4] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4] + ch * VL + t]
                                + data[indptr[no % co] + q * 4 + 1] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 1] + ch * VL + t]
                                + data[indptr[no % co] + q * 4 + 2] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 2] + ch * VL + t]
                                + data[indptr[no % co] + q * 4 + 3] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 3] + ch * VL + t]
                            )
                    for q in range((indptr[no % co + 1] - indptr[no % co]) % 4):
                        for t in T.vectorized(VL):
                            acc[t] = acc[t] + data[indptr[no % co + 1] - 1 - q] * xp[
                                no // co * c * plane + offsets[indptr[no % co + 1] - 1 - q] + ch * VL + t
                            ]
                    for t in range(VL):
                        if ch * VL + t < span and (ch * VL + t) % wq < ow:
                            y[no // co, no % co, (ch * VL + t) // wq, (ch * VL + t) % wq] = acc[t]
        else:
            for no in T.parallel(nb * co):
                acc = T.alloc_buffer((oh, ow), "float32")
                for i in range(oh):
                    for j in T.vectorized(ow):
                        acc[i, j] = T.float32(0)
                # Four non-zeros per pass: one load/store of the accumulator row per four FMAs.
                for q in range((indptr[no % co + 1] - indptr[no % co]) // 4):
                    for i in range(oh):
                        for j in T.vectorized(ow):
                            acc[i, j] = (
                                acc[i, j]
                                + data[indptr[no % co] + q * 4] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4] + i * wq + j]
                                + data[indptr[no % co] + q * 4 + 1] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 1] + i * wq + j]
                                + data[indptr[no % co] + q * 4 + 2] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 2] + i * wq + j]
                                + data[indptr[no % co] + q * 4 + 3] * xp[no // co * c * plane + offsets[indptr[no % co] + q * 4 + 3] + i * wq + j]
                            )
                for q in range((indptr[no % co + 1] - indptr[no % co]) % 4):
                    for i in range(oh):
                        for j in T.vectorized(ow):
                            acc[i, j] = acc[i, j] + data[indptr[no % co + 1] - 1 - q] * xp[
                                no // co * c * plane + offsets[indptr[no % co + 1] - 1 - q] + i * wq + j
                            ]
                for i in range(oh):
                    for j in T.vectorized(ow):
                        y[no // co, no % co, i, j] = acc[i, j]

    return KernelFunc(kernel, ("sparse_conv2d", x_shape, w_shape, geom), (nb, co, oh, ow))


def conv_offsets(weight: CSR, x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry) -> np.ndarray:
    """Per non-zero, where its input row starts in the kernel's padded, phase-split input buffer.

    Precomputing (group, channel, kh, kw, stride phase) → one int32 offset at pack time leaves the
    inner loop a single add per non-zero.
    """
    co, cig, kh, kw = w_shape
    (sh, sw), (dh, dw), g = geom.stride, geom.dilation, geom.groups
    split = PhaseSplit.of(x_shape, (kh, kw), geom)
    rows = np.repeat(np.arange(co), np.diff(weight.indptr))
    col = weight.indices.astype(np.int64)
    ci = rows // (co // g) * cig + col // (kh * kw)
    rr = col % (kh * kw) // kw * dh
    ss = col % kw * dw
    return split.offset(ci, rr % sh, ss % sw, rr // sh, ss // sw).astype(np.int32)


def csr_consts(weight: CSR) -> list[np.ndarray]:
    """The kernel's weight arguments; an all-zero weight gets one harmless zero entry."""
    if weight.nnz == 0:
        return [weight.indptr, np.zeros(1, np.int32), np.zeros(1, np.float32)]
    return [weight.indptr, weight.indices, weight.data]


def sparse_conv2d_consts(
    weight: np.ndarray, x_shape: tuple[int, int, int, int], geom: ConvGeometry
) -> list[np.ndarray]:
    """The packed weight arguments of `sparse_conv2d_func`: indptr, input offsets, values."""
    csr = conv_weight_csr(weight)
    indptr, _, data = csr_consts(csr)
    offsets = conv_offsets(csr, x_shape, weight.shape, geom) if csr.nnz else np.zeros(1, np.int32)
    return [indptr, offsets, data]


def bind_sparse_conv2d(
    weight: np.ndarray, x_shape: tuple[int, int, int, int], geom: ConvGeometry, target=None
) -> BoundKernel:
    """A ready-to-call sparse conv for a (masked) dense weight [CO, CI/g, KH, KW]."""
    kf = sparse_conv2d_func(tuple(x_shape), tuple(weight.shape), geom)
    return BoundKernel(kf, sparse_conv2d_consts(weight, tuple(x_shape), geom), target)
