"""Target registry, host detection, and artifacts for boards built here without them."""

from __future__ import annotations

import shutil

import onnx
import pytest

from tridesign import targets
from tridesign.compiler.options import CompileOptions
from tridesign.targets import detect_host, get_target, x86_level
from tridesign.errors import TridesignError, UsageError

ZEN4_FLAGS = "flags\t: fpu sse4_1 sse4_2 ssse3 popcnt avx avx2 bmi1 bmi2 fma movbe avx512f avx512bw avx512cd avx512dq avx512vl\n"
ELF_MACHINE_AARCH64 = 183


def elf_machine(path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


def test_x86_levels_follow_the_flags():
    assert x86_level(set(ZEN4_FLAGS.split(":")[1].split())) == "x86-64-v4"
    assert x86_level({"avx", "avx2", "bmi1", "bmi2", "fma", "movbe", "sse4_2"}) == "x86-64-v3"
    assert x86_level({"sse4_1", "sse4_2", "ssse3", "popcnt"}) == "x86-64-v2"
    assert x86_level(set()) == "x86-64"


def test_detect_host_from_cpuinfo():
    spec = detect_host(cpuinfo=ZEN4_FLAGS, machine="x86_64", cores=2)
    assert spec.host == {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v4", "num-cores": 2}
    arm = detect_host(cpuinfo="Features\t: fp asimd\n", machine="aarch64", cores=4)
    assert arm.host["mtriple"] == "aarch64-linux-gnu" and arm.host["num-cores"] == 4


def test_boards_and_generic_cuda():
    orin = get_target("jetson-agx-orin")
    assert orin.tvm_json()["arch"] == "sm_87" and orin.tvm_json()["host"]["mcpu"] == "cortex-a78ae"
    assert get_target("jetson-xavier-nx").tvm_json()["arch"] == "sm_72"
    assert get_target("rpi5").name == "raspberry-pi-5" and get_target("raspberry-pi-5").device is None
    h100 = get_target("cuda:sm_90")
    assert h100.tvm_json()["arch"] == "sm_90" and not h100.runs_here
    assert get_target("host").runs_here and orin.is_cross
    for spec in targets.list_targets():
        spec.tvm_target()  # every registered JSON is a valid TVM target
    assert len({spec.key() for spec in targets.list_targets()}) == len(targets.list_targets())


@pytest.mark.parametrize("name", ["jetson-nano-2gb", "cuda:90", "cuda:sm_x"])
def test_unknown_targets_are_usage_errors(name):
    with pytest.raises(UsageError, match="unknown target"):
        get_target(name)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs Debian's g++-aarch64-linux-gnu")
def test_raspberry_pi_artifact_is_an_aarch64_shared_library(tvm_backend, tmp_path, empty_db, odd_model):
    onnx.save(odd_model, tmp_path / "m.onnx")
    out = tmp_path / "art"
    out.mkdir()
    result = tvm_backend.compile(tmp_path / "m.onnx", out, CompileOptions(backend="tvm", target="raspberry-pi-5", tuning_db=empty_db))
    assert result.files[0] == "module.so" and elf_machine(out / "module.so") == ELF_MACHINE_AARCH64
    assert result.target["tvm"]["mcpu"] == "cortex-a76"
    with pytest.raises(TridesignError, match="cannot run on this machine"):
        tvm_backend.load(out)


def test_without_cross_compiler_the_object_form_is_written(tvm_backend, tmp_path, empty_db, odd_model, monkeypatch):
    monkeypatch.setattr(targets.shutil, "which", lambda name: None)
    onnx.save(odd_model, tmp_path / "m.onnx")
    out = tmp_path / "art"
    out.mkdir()
    result = tvm_backend.compile(tmp_path / "m.onnx", out, CompileOptions(backend="tvm", target="raspberry-pi-5", tuning_db=empty_db))
    assert result.files[0] == "module.tar" and (out / "module.tar").is_file()
    assert any("aarch64-linux-gnu-g++ not found" in note for note in result.notes)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs Debian's g++-aarch64-linux-gnu")
def test_jetson_artifact_carries_cuda_kernels_built_without_a_gpu(tvm_backend, tmp_path, empty_db, small_conv_model):
    onnx.save(small_conv_model, tmp_path / "m.onnx")
    out = tmp_path / "art"
    out.mkdir()
    result = tvm_backend.compile(tmp_path / "m.onnx", out, CompileOptions(backend="tvm", target="jetson-orin-nano", tuning_db=empty_db))
    assert result.target["tvm"]["arch"] == "sm_87"
    library = (out / "module.so").read_bytes()
    assert elf_machine(out / "module.so") == ELF_MACHINE_AARCH64
    assert b"fused_conv2d_relu_kernel" in library or b"_kernel" in library


def test_tvm_runtime_settings_apply_in_this_process():
    """The thread pool covers the usable cores and, under glibc, freed scratch stays in the heap."""
    import os
    import platform

    from tridesign.board.tvm_module import configure_tvm_threads, keep_scratch_memory

    assert configure_tvm_threads() == int(os.environ["TVM_NUM_THREADS"]) >= 1
    assert keep_scratch_memory() is (platform.libc_ver()[0] == "glibc")
