"""BSR × dense on the CPU: Y[M, N] = W[M, K] · X[K, N] with W block-sparse (TVMScript, no blocks).

This serves Linear/MatMul (X is the transposed activation, N = tokens or batch) and 1×1 stride-1
conv in NCHW (X is the activation viewed as [C, H·W], N = pixels, no transpose at all).

Schedule, chosen for a few-core CPU: block rows are split across cores (`T.parallel`); the dense
N dimension is cut into chunks of `N_CHUNK` that are vectorised, and the block's row and column
loops are unrolled so the `block_rows × N_CHUNK` accumulator lives in registers while every stored
block of the row streams past it (unrolling measured 2–8× faster than plain loops: the
accumulator otherwise goes through memory on every multiply-add).
Zero blocks cost nothing: the loop runs over `indptr[i] .. indptr[i+1]` only. Rows and columns
beyond the logical shape (padding of odd sizes) are clamped on read and skipped on write.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from tridesign.kernels.formats import BSR
from tridesign.kernels.runtime import BoundKernel, KernelFunc

N_CHUNK = 32  # with a 4-row block: 4×32 accumulators = 8 AVX-512 registers


def n_chunks(n: int, chunk: int = N_CHUNK) -> tuple[int, int, int]:
    """(chunk, full chunks, tail) of a dense dimension: small N is one exact chunk."""
    if n <= chunk:
        return n, 1, 0
    return chunk, n // chunk, n % chunk


def bsr_matmul_func(m: int, k: int, n: int, block: tuple[int, int]) -> KernelFunc:
    """The kernel for one (M, K, N, block) signature; the stored block count is symbolic."""
    br, bc = block
    mb = -(-m // br)
    nt, nfull, tail = n_chunks(n)
    tail_base = nfull * nt
    name = f"bsr_matmul_{m}x{k}x{n}_b{br}x{bc}"

    @T.prim_func
    def kernel(
        x: T.Buffer((k, n), "float32"),
        indptr: T.Buffer((mb + 1,), "int32"),
        i_handle: T.handle,
        d_handle: T.handle,
        y: T.Buffer((m, n), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnzb = T.int32()
        indices = T.match_buffer(i_handle, (nnzb,), "int32")
        data = T.match_buffer(d_handle, (nnzb, br, bc), "float32")
        for ib in T.parallel(mb):
            acc = T.alloc_buffer((br, nt), "float32")
            for nb in range(nfull):
                for r in range(br):
                    for j in T.vectorized(nt):
                        acc[r, j] = T.float32(0)
                for q in range(indptr[ib + 1] - indptr[ib]):
                    p = indptr[ib] + q
                    for c in T.unroll(bc):
                        kk = T.min(indices[p] * bc + c, k - 1)
                        for r in T.unroll(br):
                            for j in T.vectorized(nt):
                                acc[r, j] = acc[r, j] + data[p, r, c] * x[kk, nb * nt + j]
                for r in range(br):
                    if ib * br + r < m:
                        for j in T.vectorized(nt):
                            y[ib * br + r, nb * nt + j] = acc[r, j]
            if tail > 0:
                for r in range(br):
                    for j in T.vectorized(tail):
                        acc[r, j] = T.float32(0)
                for q in range(indptr[ib + 1] - indptr[ib]):
                    p = indptr[ib] + q
                    for c in T.unroll(bc):
                        kk = T.min(indices[p] * bc + c, k - 1)
                        for r in T.unroll(br):
                            for j in T.vectorized(tail):
                                acc[r, j] = acc[r, j] + data[p, r, c] * x[kk, tail_base + j]
                for r in range(br):
                    if ib * br + r < m:
                        for j in T.vectorized(tail):
                            y[ib * br + r, tail_base + j] = acc[r, j]

    return KernelFunc(kernel, ("bsr_matmul", m, k, n, br, bc), (m, n))


def bind_bsr_matmul(weight: BSR, n: int, target=None) -> BoundKernel:
    """A ready-to-call kernel computing `weight @ x` for x of shape [K, n]."""
    kf = bsr_matmul_func(weight.shape[0], weight.shape[1], n, weight.block)
    consts = [weight.indptr, weight.indices, weight.data]
    if weight.nnz_blocks == 0:  # a zero-length buffer cannot be handed to the kernel; a zero block is harmless
        consts = [weight.indptr, np.zeros(1, np.int32), np.zeros((1, *weight.block), np.float32)]
    return BoundKernel(kf, consts, target)
