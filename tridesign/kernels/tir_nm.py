"""N:M (2:4) compressed GEMM on the CPU: Y[M, N] = W[M, K] · X[K, N], W stored as values + indices.

Every row keeps exactly N of each M columns, so the work is a fixed K·N/M multiply-adds per row
with no indptr at all: the loop bounds are compile-time constants and only the column offset
inside a group (a uint8) is read from memory. This is the format sparse tensor cores use (2:4),
here for the CPU: rows across cores, the dense N dimension in vectorised chunks (as in tir_bsr).
"""

from __future__ import annotations

from tvm.script import tirx as T

from tridesign.kernels.formats import NM
from tridesign.kernels.runtime import BoundKernel, KernelFunc
from tridesign.kernels.tir_bsr import n_chunks


def nm_matmul_func(m: int, k: int, n: int, keep: int, group: int) -> KernelFunc:
    """The kernel for one (M, K, N, N:M) signature."""
    groups = -(-k // group)
    width = groups * keep
    nt, nfull, tail = n_chunks(n)
    tail_base = nfull * nt
    name = f"nm_matmul_{m}x{k}x{n}_{keep}of{group}"

    @T.prim_func
    def kernel(
        x: T.Buffer((k, n), "float32"),
        values: T.Buffer((m, width), "float32"),
        indices: T.Buffer((m, width), "uint8"),
        y: T.Buffer((m, n), "float32"),
    ):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        for row in T.parallel(m):
            acc = T.alloc_buffer((nt,), "float32")
            for nb in range(nfull):
                for j in T.vectorized(nt):
                    acc[j] = T.float32(0)
                for q in range(width):
                    kk = T.min(q // keep * group + T.Cast("int32", indices[row, q]), k - 1)
                    for j in T.vectorized(nt):
                        acc[j] = acc[j] + values[row, q] * x[kk, nb * nt + j]
                for j in T.vectorized(nt):
                    y[row, nb * nt + j] = acc[j]
            if tail > 0:
                for j in T.vectorized(tail):
                    acc[j] = T.float32(0)
                for q in range(width):
                    kk = T.min(q // keep * group + T.Cast("int32", indices[row, q]), k - 1)
                    for j in T.vectorized(tail):
                        acc[j] = acc[j] + values[row, q] * x[kk, tail_base + j]
                for j in T.vectorized(tail):
                    y[row, tail_base + j] = acc[j]

    return KernelFunc(kernel, ("nm_matmul", m, k, n, keep, group), (m, n))


def bind_nm_matmul(weight: NM, n: int, target=None) -> BoundKernel:
    """A ready-to-call kernel computing `weight @ x` for x of shape [K, n]."""
    kf = nm_matmul_func(weight.shape[0], weight.shape[1], n, weight.n, weight.m)
    return BoundKernel(kf, [weight.values, weight.indices], target)
