"""Compile TIR kernels for a target, once per shape signature, and cross-compile for aarch64.

Compiling one kernel costs ~0.1–0.3 s; a model or a property test would otherwise compile the
same shape many times. Every kernel generator returns its PrimFunc with a *signature* (kernel
kind + static shape parameters; the non-zero count is a symbolic buffer size, so sparsity
patterns of the same layer share one binary), and `build` caches on (signature, target).

Targets are TVM 0.27 JSON dicts. The host target names the CPU explicitly because LLVM rejects
`-mcpu=native` with the conda triple TVM reports; aarch64 (Jetson Orin's Cortex-A78AE) is
compiled to a relocatable object only, since nothing here can run it.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import tvm

from tridesign.compiler.targets import configure_tvm_runtime

Signature = tuple[Any, ...]
configure_tvm_runtime()


def host_target(num_cores: int | None = None) -> tvm.target.Target:
    """The machine we run on, with its real CPU name so LLVM emits AVX2/AVX-512 code."""
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    triple = tvm.target.codegen.llvm_get_system_triple()
    arch = triple.split("-")[0]
    spec: dict[str, Any] = {"kind": "llvm", "mtriple": f"{arch}-linux-gnu", "num-cores": num_cores or os.cpu_count() or 1}
    if cpu and cpu != "generic" and tvm.target.codegen.llvm_is_valid_cpu(cpu, f"{arch}-linux-gnu"):
        spec["mcpu"] = cpu
    return tvm.target.Target(spec)


def aarch64_target(mcpu: str = "cortex-a78") -> tvm.target.Target:
    """Jetson Orin class CPU (Cortex-A78AE; LLVM knows it as cortex-a78)."""
    return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "num-cores": 8})


def cuda_target(arch: str) -> tvm.target.Target:
    """CUDA for one SM architecture: sm_87 (Jetson Orin) or sm_90 (Hopper)."""
    host = {"kind": "llvm", "mtriple": host_target().attrs["mtriple"]}
    return tvm.target.Target({"kind": "cuda", "arch": arch, "host": host})


def _target_key(target: tvm.target.Target) -> str:
    return json.dumps({k: str(v) for k, v in target.export().items()}, sort_keys=True)


_CACHE: dict[tuple[Signature, str], tvm.runtime.Module] = {}


def build(func: tvm.tirx.PrimFunc, signature: Signature, target: tvm.target.Target | None = None) -> tvm.runtime.Module:
    """Compile `func` (its global symbol is its name in the module) and cache it by signature."""
    target = target or default_host_target()
    key = (signature, _target_key(target))
    if key not in _CACHE:
        name = str(func.attrs["global_symbol"])
        _CACHE[key] = tvm.compile(tvm.IRModule({name: func}), target=target).mod
    return _CACHE[key]


def cache_size() -> int:
    return len(_CACHE)


@lru_cache(maxsize=1)
def default_host_target() -> tvm.target.Target:
    return host_target()


def cross_compile_object(func: tvm.tirx.PrimFunc, target: tvm.target.Target, path: Path) -> Path:
    """Write `func` compiled for `target` as a relocatable object file (atomically)."""
    name = str(func.attrs["global_symbol"])
    mod = tvm.compile(tvm.IRModule({name: func}), target=target).mod
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".o", dir=path.parent)
    os.close(fd)
    try:
        mod.write_to_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
