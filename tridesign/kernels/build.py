"""Compile TIR kernels for a target, once per shape signature, and cross-compile for aarch64.

Compiling one kernel costs ~0.1–0.3 s; a model or a property test would otherwise compile the
same shape many times. Every kernel generator returns its PrimFunc with a *signature* (kernel
kind + static shape parameters; the non-zero count is a symbolic buffer size, so sparsity
patterns of the same layer share one binary), and `build` caches on (signature, target).

Targets come from the one registry (tridesign.targets): the default is `host`, the same target
`compile` builds for (its ISA level detected from /proc/cpuinfo), so a kernel measured here is the
kernel the compiler emits; an aarch64 board's kernels are compiled to a relocatable object only,
since nothing here can run them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tvm

from tridesign.atomic import atomic_path
from tridesign.board.tvm_module import configure_tvm_runtime
from tridesign.targets import tvm_target

Signature = tuple[Any, ...]


def _target_key(target: tvm.target.Target) -> str:
    return json.dumps({k: str(v) for k, v in target.export().items()}, sort_keys=True)


_CACHE: dict[tuple[Signature, str], tvm.runtime.Module] = {}


def build(func: tvm.tirx.PrimFunc, signature: Signature, target: tvm.target.Target | None = None) -> tvm.runtime.Module:
    """Compile `func` (its global symbol is its name in the module) and cache it by signature."""
    target = target or tvm_target("host")
    key = (signature, _target_key(target))
    if key not in _CACHE:
        configure_tvm_runtime()
        name = str(func.attrs["global_symbol"])
        _CACHE[key] = tvm.compile(tvm.IRModule({name: func}), target=target).mod
    return _CACHE[key]


def cache_size() -> int:
    return len(_CACHE)


def cross_compile_object(func: tvm.tirx.PrimFunc, target: tvm.target.Target, path: Path) -> Path:
    """Write `func` compiled for `target` as a relocatable object file (atomically)."""
    configure_tvm_runtime()
    name = str(func.attrs["global_symbol"])
    mod = tvm.compile(tvm.IRModule({name: func}), target=target).mod
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        mod.write_to_file(str(tmp))
    return path
