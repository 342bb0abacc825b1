"""CUDA kernels: compiled for sm_87 and sm_90 here (nvcc, no GPU); run against numpy on a GPU only."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tridesign.kernels import reference as ref
from tridesign.kernels.cuda import compile_cubin, cuda_kernels_for_tests
from tridesign.kernels.formats import BSR, NM, TileMask
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.tir_conv import conv_weight_csr, csr_consts

EM_CUDA = 190
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")


def _has_gpu() -> bool:
    import tvm

    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001 -- a TVM without CUDA runtime raises here
        return False


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_kernels_compile_to_a_cubin_for_the_architecture(arch: str, tmp_path: Path) -> None:
    cubin = compile_cubin(cuda_kernels_for_tests(), arch, tmp_path / f"kernels_{arch}.cubin").read_bytes()
    assert cubin[:4] == b"\x7fELF"
    assert struct.unpack("<H", cubin[18:20])[0] == EM_CUDA
    e_flags = struct.unpack("<I", cubin[48:52])[0]
    assert (e_flags >> 8) & 0xFF == int(arch[3:])  # the SM version nvcc wrote into the ELF header
    for kf in cuda_kernels_for_tests():
        assert f"{kf.name}_kernel".encode() in cubin


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs an NVIDIA GPU")
def test_cuda_kernels_match_numpy_on_the_gpu() -> None:
    import tvm

    from tridesign.targets import tvm_target

    dev = tvm.cuda(0)
    bsr_k, nm_k, conv_k, copy_k, tile_k = cuda_kernels_for_tests()
    assert copy_k.out_shape == tile_k.out_shape
    arch = "sm_" + dev.compute_version.replace(".", "")
    kernels = (bsr_k, nm_k, conv_k, copy_k, tile_k)
    mod = tvm.compile(tvm.IRModule({k.name: k.func for k in kernels}), target=tvm_target(f"cuda:{arch}")).mod
    rng = np.random.default_rng(0)

    def call(kf, *arrays):
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
        out = tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32), dev)
        mod[kf.name](*args, out)
        return out.numpy()

    w = (rng.standard_normal((30, 20)) * (rng.random((30, 20)) < 0.3)).astype(np.float32)
    x = rng.standard_normal((20, 70)).astype(np.float32)
    b = BSR.pack(w, (4, 4))
    np.testing.assert_allclose(call(bsr_k, x, b.indptr, b.indices, b.data), w @ x, rtol=1e-4, atol=1e-4)

    keep = np.zeros((16, 8, 4), bool)
    np.put_along_axis(keep, np.argsort(rng.random(keep.shape), axis=2)[:, :, :2], True, axis=2)
    wn = (rng.standard_normal((16, 32)) * keep.reshape(16, 32))[:, :30].astype(np.float32)
    xn = rng.standard_normal((30, 40)).astype(np.float32)
    nm = NM.pack(wn)
    np.testing.assert_allclose(call(nm_k, xn, nm.values, nm.indices), wn @ xn, rtol=1e-4, atol=1e-4)

    geom = ConvGeometry((2, 1), (1, 2), (2, 1), 2)
    wc = (rng.standard_normal((4, 3, 3, 3)) * (rng.random((4, 3, 3, 3)) < 0.5)).astype(np.float32)
    xc = rng.standard_normal((2, 6, 11, 8)).astype(np.float32)
    np.testing.assert_allclose(call(conv_k, xc, *csr_consts(conv_weight_csr(wc))), ref.conv2d(xc, wc, geom), rtol=1e-4, atol=1e-4)

    x1 = xc[:1]
    prev = rng.standard_normal(tile_k.out_shape).astype(np.float32)
    mask = TileMask(*tile_k.out_shape[2:], (3, 4), rng.random((-(-tile_k.out_shape[2] // 3), -(-tile_k.out_shape[3] // 4))) < 0.5)
    y = tvm.runtime.tensor(np.zeros(tile_k.out_shape, np.float32), dev)
    mod[copy_k.name](tvm.runtime.tensor(prev, dev), y)
    args = [tvm.runtime.tensor(a, dev) for a in (x1, mask.active_ids(), *csr_consts(conv_weight_csr(wc)))]
    mod[tile_k.name](*args, y)
    np.testing.assert_allclose(y.numpy(), ref.tile_conv2d(x1, wc, geom, mask, prev), rtol=1e-4, atol=1e-4)
