"""CUDA versions of the sparse kernels, generated from TVMScript and compiled for sm_87 / sm_90.

Same formats, same calling convention as the CPU kernels (activations, packed weights, output),
one GPU thread per output element: the CPU schedule's "vectorised dense dimension" becomes the
thread index, the CPU's parallel rows become the grid. Weights are read through the CSR/BSR/N:M
metadata, so zero blocks cost neither memory traffic nor FMAs.

Nothing here needs a GPU to *build*: `compile_cubin` lowers the module with TVM's CUDA target and
runs nvcc for the requested SM architecture (sm_87 = Jetson Orin, sm_90 = Hopper); the result is
a cubin a deployment loads. Running them needs a GPU (tests marked `gpu`).
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm.script import tirx as T

from tridesign.atomic import write_bytes_atomic
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.targets import tvm_target

THREADS = 128


def bsr_matmul_cuda(m: int, k: int, n: int, block: tuple[int, int]) -> KernelFunc:
    """Y = W·X, W BSR: one block row per grid x, one output column per thread (block rows in registers)."""
    br, bc = block
    mb = -(-m // br)
    name = f"bsr_matmul_cuda_{m}x{k}x{n}_b{br}x{bc}"

    @T.prim_func
    def kernel(x: T.Buffer((k, n), "float32"), indptr: T.Buffer((mb + 1,), "int32"), i_handle: T.handle,
               d_handle: T.handle, y: T.Buffer((m, n), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnzb = T.int32()
        indices = T.match_buffer(i_handle, (nnzb,), "int32")
        data = T.match_buffer(d_handle, (nnzb, br, bc), "float32")
        ib = T.launch_thread("blockIdx.x", mb)
        nb = T.launch_thread("blockIdx.y", -(-n // THREADS))
        tx = T.launch_thread("threadIdx.x", THREADS)
        acc = T.alloc_buffer((br,), "float32", scope="local")
        if nb * THREADS + tx < n:
            for r in range(br):
                acc[r] = T.float32(0)
            for q in range(indptr[ib + 1] - indptr[ib]):
                for c in range(bc):
                    for r in range(br):
                        acc[r] = acc[r] + data[indptr[ib] + q, r, c] * x[
                            T.min(indices[indptr[ib] + q] * bc + c, k - 1), nb * THREADS + tx
                        ]
            for r in range(br):
                if ib * br + r < m:
                    y[ib * br + r, nb * THREADS + tx] = acc[r]

    return KernelFunc(kernel, ("bsr_matmul_cuda", m, k, n, br, bc), (m, n))


def nm_matmul_cuda(m: int, k: int, n: int, keep: int, group: int) -> KernelFunc:
    """Y = W·X, W N:M compressed: one row per grid x, one output column per thread."""
    width = -(-k // group) * keep
    name = f"nm_matmul_cuda_{m}x{k}x{n}_{keep}of{group}"

    @T.prim_func
    def kernel(x: T.Buffer((k, n), "float32"), values: T.Buffer((m, width), "float32"),
               indices: T.Buffer((m, width), "uint8"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        row = T.launch_thread("blockIdx.x", m)
        nb = T.launch_thread("blockIdx.y", -(-n // THREADS))
        tx = T.launch_thread("threadIdx.x", THREADS)
        acc = T.alloc_buffer((1,), "float32", scope="local")
        if nb * THREADS + tx < n:
            acc[0] = T.float32(0)
            for q in range(width):
                acc[0] = acc[0] + values[row, q] * x[
                    T.min(q // keep * group + T.Cast("int32", indices[row, q]), k - 1), nb * THREADS + tx
                ]
            y[row, nb * THREADS + tx] = acc[0]

    return KernelFunc(kernel, ("nm_matmul_cuda", m, k, n, keep, group), (m, n))


def sparse_conv2d_cuda(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry
) -> KernelFunc:
    """Direct sparse conv over CSR weights: one (batch, channel) per grid x, one output pixel per thread."""
    nb, c, h, w = x_shape
    co, cig, kh, kw = w_shape
    oh, ow = geom.output_hw(h, w, (kh, kw))
    (sh, sw), (ph, pw), (dh, dw), g = geom.stride, geom.padding, geom.dilation, geom.groups
    cog, kk = co // g, kh * kw
    name = f"sparse_conv2d_cuda_{nb}x{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}g{g}"

    @T.prim_func
    def kernel(x: T.Buffer((nb, c, h, w), "float32"), indptr: T.Buffer((co + 1,), "int32"), i_handle: T.handle,
               d_handle: T.handle, y: T.Buffer((nb, co, oh, ow), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        nnz = T.int32()
        indices = T.match_buffer(i_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        no = T.launch_thread("blockIdx.x", nb * co)
        pb = T.launch_thread("blockIdx.y", -(-(oh * ow) // THREADS))
        tx = T.launch_thread("threadIdx.x", THREADS)
        acc = T.alloc_buffer((1,), "float32", scope="local")
        if pb * THREADS + tx < oh * ow:
            acc[0] = T.float32(0)
            for q in range(indptr[no % co + 1] - indptr[no % co]):
                acc[0] = acc[0] + data[indptr[no % co] + q] * T.if_then_else(
                    (pb * THREADS + tx) // ow * sh - ph + indices[indptr[no % co] + q] % kk // kw * dh >= 0
                    and (pb * THREADS + tx) // ow * sh - ph + indices[indptr[no % co] + q] % kk // kw * dh < h
                    and (pb * THREADS + tx) % ow * sw - pw + indices[indptr[no % co] + q] % kw * dw >= 0
                    and (pb * THREADS + tx) % ow * sw - pw + indices[indptr[no % co] + q] % kw * dw < w,
                    x[
                        no // co,
                        (no % co) // cog * cig + indices[indptr[no % co] + q] // kk,
                        T.min(T.max((pb * THREADS + tx) // ow * sh - ph + indices[indptr[no % co] + q] % kk // kw * dh, 0), h - 1),
                        T.min(T.max((pb * THREADS + tx) % ow * sw - pw + indices[indptr[no % co] + q] % kw * dw, 0), w - 1),
                    ],
                    T.float32(0),
                )
            y[no // co, no % co, (pb * THREADS + tx) // ow, (pb * THREADS + tx) % ow] = acc[0]

    return KernelFunc(kernel, ("sparse_conv2d_cuda", x_shape, w_shape, geom), (nb, co, oh, ow))


def tile_copy_cuda(shape: tuple[int, int, int, int]) -> KernelFunc:
    """y = previous: the first launch of a tile-sparse frame (inactive tiles keep the old output)."""
    n, c, h, w = shape
    total = n * c * h * w
    name = "tile_copy_cuda_" + "x".join(str(d) for d in shape)

    @T.prim_func
    def kernel(previous: T.Buffer((n, c, h, w), "float32"), y: T.Buffer((n, c, h, w), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        bx = T.launch_thread("blockIdx.x", -(-total // THREADS))
        tx = T.launch_thread("threadIdx.x", THREADS)
        if bx * THREADS + tx < total:
            y[(bx * THREADS + tx) // (c * h * w), (bx * THREADS + tx) // (h * w) % c, (bx * THREADS + tx) // w % h,
              (bx * THREADS + tx) % w] = previous[(bx * THREADS + tx) // (c * h * w), (bx * THREADS + tx) // (h * w) % c,
                                                  (bx * THREADS + tx) // w % h, (bx * THREADS + tx) % w]

    return KernelFunc(kernel, ("tile_copy_cuda", shape), shape)


def tile_conv2d_cuda(
    x_shape: tuple[int, int, int, int], w_shape: tuple[int, int, int, int], geom: ConvGeometry, tile: tuple[int, int]
) -> KernelFunc:
    """Active tiles only: one (tile, channel) per grid block, one tile pixel per thread (run after
    `tile_copy_cuda`, on the same output buffer). Halo reads come straight from the input."""
    _, c, h, w = x_shape
    co, cig, kh, kw = w_shape
    oh, ow = geom.output_hw(h, w, (kh, kw))
    (sh, sw), (ph, pw), (dh, dw), g = geom.stride, geom.padding, geom.dilation, geom.groups
    th, tw = tile
    tiles_x, cog, kk = -(-ow // tw), co // g, kh * kw
    name = f"tile_conv2d_cuda_{c}x{h}x{w}_{co}x{cig}x{kh}x{kw}_s{sh}{sw}p{ph}{pw}d{dh}{dw}g{g}_t{th}x{tw}"

    @T.prim_func
    def kernel(x: T.Buffer((1, c, h, w), "float32"), t_handle: T.handle, indptr: T.Buffer((co + 1,), "int32"),
               i_handle: T.handle, d_handle: T.handle, y: T.Buffer((1, co, oh, ow), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True, "tir.is_scheduled": True})
        n_active = T.int32()
        nnz = T.int32()
        tiles = T.match_buffer(t_handle, (n_active,), "int32")
        indices = T.match_buffer(i_handle, (nnz,), "int32")
        data = T.match_buffer(d_handle, (nnz,), "float32")
        t = T.launch_thread("blockIdx.x", n_active)
        o = T.launch_thread("blockIdx.y", co)
        tx = T.launch_thread("threadIdx.x", th * tw)
        acc = T.alloc_buffer((1,), "float32", scope="local")
        if tiles[t] // tiles_x * th + tx // tw < oh and tiles[t] % tiles_x * tw + tx % tw < ow:
            acc[0] = T.float32(0)
            for q in range(indptr[o + 1] - indptr[o]):
                acc[0] = acc[0] + data[indptr[o] + q] * T.if_then_else(
                    (tiles[t] // tiles_x * th + tx // tw) * sh - ph + indices[indptr[o] + q] % kk // kw * dh >= 0
                    and (tiles[t] // tiles_x * th + tx // tw) * sh - ph + indices[indptr[o] + q] % kk // kw * dh < h
                    and (tiles[t] % tiles_x * tw + tx % tw) * sw - pw + indices[indptr[o] + q] % kw * dw >= 0
                    and (tiles[t] % tiles_x * tw + tx % tw) * sw - pw + indices[indptr[o] + q] % kw * dw < w,
                    x[
                        0,
                        o // cog * cig + indices[indptr[o] + q] // kk,
                        T.min(T.max((tiles[t] // tiles_x * th + tx // tw) * sh - ph + indices[indptr[o] + q] % kk // kw * dh, 0), h - 1),
                        T.min(T.max((tiles[t] % tiles_x * tw + tx % tw) * sw - pw + indices[indptr[o] + q] % kw * dw, 0), w - 1),
                    ],
                    T.float32(0),
                )
            y[0, o, tiles[t] // tiles_x * th + tx // tw, tiles[t] % tiles_x * tw + tx % tw] = acc[0]

    return KernelFunc(kernel, ("tile_conv2d_cuda", x_shape, w_shape, geom, tile), (1, co, oh, ow))


def cuda_kernels_for_tests() -> list[KernelFunc]:
    """One small instance of every CUDA kernel: what the compile test and the GPU tests build."""
    geom = ConvGeometry((2, 1), (1, 2), (2, 1), 2)
    tile = tile_conv2d_cuda((1, 6, 11, 8), (4, 3, 3, 3), geom, (3, 4))
    return [
        bsr_matmul_cuda(30, 20, 70, (4, 4)),
        nm_matmul_cuda(16, 30, 40, 2, 4),
        sparse_conv2d_cuda((2, 6, 11, 8), (4, 3, 3, 3), geom),
        tile_copy_cuda(tile.out_shape),
        tile,
    ]


def cuda_source(kernels: list[KernelFunc], arch: str) -> str:
    """The CUDA C TVM generates for these kernels (one translation unit)."""
    mod = tvm.IRModule({kf.name: kf.func for kf in kernels})
    ex = tvm.compile(mod, target=tvm_target(f"cuda:{arch}"))
    return ex.mod.imports[0].inspect_source("")


def compile_cubin(kernels: list[KernelFunc], arch: str, path: Path) -> Path:
    """Compile the kernels with nvcc for one SM architecture into a cubin, written atomically."""
    from tvm.support import nvcc

    source = cuda_source(kernels, arch)
    with tvm_target(f"cuda:{arch}"):
        binary = bytes(nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, binary)
    return path
