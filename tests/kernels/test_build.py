"""Kernel builds: one compile per shape signature, and aarch64 cross-compiled objects."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tridesign.kernels.build import build, cache_size, cross_compile_object
from tridesign.kernels.formats import BSR
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.tir_bsr import bind_bsr_matmul, bsr_matmul_func
from tridesign.kernels.tir_conv import sparse_conv2d_func
from tridesign.kernels.tir_nm import nm_matmul_func
from tridesign.kernels.tir_tile import tile_conv2d_func
from tridesign.targets import get_target, tvm_target

EM_AARCH64 = 183


def test_same_signature_compiles_once_whatever_the_sparsity() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 6)).astype(np.float32)
    bind_bsr_matmul(BSR.pack(np.eye(10, 12, dtype=np.float32), (2, 2)), 6)(x)
    before = cache_size()
    w = (rng.standard_normal((10, 12)) * (rng.random((10, 12)) < 0.3)).astype(np.float32)
    np.testing.assert_allclose(bind_bsr_matmul(BSR.pack(w, (2, 2)), 6)(x), w @ x, rtol=1e-5, atol=1e-5)
    assert cache_size() == before
    kf = bsr_matmul_func(10, 12, 7, (2, 2))
    build(kf.func, kf.signature)
    assert cache_size() == before + 1


def test_kernels_build_for_the_target_compile_builds_for() -> None:
    """One registry: the kernels' default target is `compile`'s host target, CPU level included."""
    target = tvm_target("host")
    assert str(target.kind) == "llvm"
    assert target.attrs["mtriple"].endswith("linux-gnu")
    assert str(target.attrs["mcpu"]) == get_target("host").host["mcpu"]


@pytest.mark.parametrize(
    "kernel",
    [
        bsr_matmul_func(64, 64, 49, (4, 4)),
        sparse_conv2d_func((1, 16, 14, 14), (16, 16, 3, 3), ConvGeometry((1, 1), (1, 1))),
        nm_matmul_func(32, 64, 16, 2, 4),
        tile_conv2d_func((1, 8, 16, 16), (8, 8, 3, 3), ConvGeometry((1, 1), (1, 1)), (8, 8)),
    ],
    ids=lambda kf: kf.signature[0],
)
def test_every_kernel_cross_compiles_for_aarch64(kernel, tmp_path: Path) -> None:
    obj = cross_compile_object(kernel.func, tvm_target("jetson-agx-orin"), tmp_path / f"{kernel.name}.o")
    header = obj.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert struct.unpack("<H", header[18:20])[0] == EM_AARCH64
    assert list(tmp_path.iterdir()) == [obj]  # no temporary left behind

