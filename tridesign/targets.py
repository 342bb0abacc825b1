"""Named deployment targets: what TVM compiles for, and how the result is linked.

The one target registry: `compile`, `tune`, the kernels (their builds and tile measurements) and
`profile --remote` all resolve targets here, so a tile timed by a kernel test is timed for the same
CPU that `compile` builds for. Users say `--target jetson-orin-nano`, not a TVM target JSON: the registry holds the board facts
(CPU core, CUDA architecture, core count, cross toolchain) in one place, documented in
docs/targets.md. `host` is detected from /proc/cpuinfo so a tuned schedule is specific to the ISA
it was measured on (the tuning database is keyed by the target's hash). `cuda:<arch>` is a generic
GPU target for any NVIDIA card (e.g. `cuda:sm_90`), with the host CPU as its host.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tridesign.board.tvm_module import usable_cores
from tridesign.errors import UsageError

AARCH64_TRIPLE = "aarch64-linux-gnu"
AARCH64_CXX = "aarch64-linux-gnu-g++"  # Debian's g++-aarch64-linux-gnu


@dataclass(frozen=True)
class TargetSpec:
    """One named target: the TVM target JSON for its CPU (and GPU), and how to link for it."""

    name: str
    description: str
    host: dict[str, Any]  # TVM JSON of the CPU target (kind llvm)
    device: dict[str, Any] | None = None  # TVM JSON of the GPU target (kind cuda), None for CPU-only
    cross_compiler: str | None = None  # C++ driver that links the shared library; None = the host's
    board: str = ""  # where the numbers come from
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def tvm_json(self) -> dict[str, Any]:
        """The full TVM target dict: the device with the CPU as its host, or the CPU alone."""
        if self.device is None:
            return dict(self.host)
        return {**self.device, "host": dict(self.host)}

    def tvm_target(self) -> Any:
        import tvm

        return tvm.target.Target(self.tvm_json())

    @property
    def is_cross(self) -> bool:
        """True when the artifact runs on another ISA than this machine's."""
        triple = self.host.get("mtriple", "")
        return bool(triple) and not triple.startswith(platform.machine())

    @property
    def runs_here(self) -> bool:
        """Whether an artifact for this target can be executed on this machine (same ISA, GPU present)."""
        if self.is_cross:
            return False
        return self.device is None or cuda_present()

    def key(self) -> str:
        """A short stable hash of the target JSON, naming its tuning database directory."""
        blob = json.dumps(self.tvm_json(), sort_keys=True).encode()
        return f"{self.name.replace(':', '-')}-{hashlib.sha256(blob).hexdigest()[:12]}"


def cuda_present() -> bool:
    """An NVIDIA GPU the TVM runtime can use (CUDA code is generated without one, but not run)."""
    import tvm

    return bool(tvm.cuda(0).exist)


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def host_cpu_flags() -> set[str]:
    """This machine's CPU feature flags, as /proc/cpuinfo lists them (empty where it does not exist)."""
    path = Path("/proc/cpuinfo")
    return _cpuinfo_flags(path.read_text()) if path.exists() else set()


def x86_level(flags: set[str]) -> str:
    """The x86-64 micro-architecture level (an LLVM mcpu) that the CPU's flags guarantee."""
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        return "x86-64-v4"
    if {"avx", "avx2", "bmi1", "bmi2", "fma", "movbe"} <= flags:
        return "x86-64-v3"
    if {"sse4_1", "sse4_2", "ssse3", "popcnt"} <= flags:
        return "x86-64-v2"
    return "x86-64"


def detect_host(cpuinfo: str | None = None, machine: str | None = None, cores: int | None = None) -> TargetSpec:
    """The target of this machine: ISA level from /proc/cpuinfo flags, and the usable core count."""
    machine = machine or platform.machine()
    cores = cores or usable_cores()
    flags = host_cpu_flags() if cpuinfo is None else _cpuinfo_flags(cpuinfo)
    if machine in ("x86_64", "AMD64"):
        mcpu, triple = x86_level(flags), "x86_64-linux-gnu"
    elif machine in ("aarch64", "arm64"):
        mcpu, triple = "generic", AARCH64_TRIPLE
    else:
        mcpu, triple = "generic", f"{machine}-linux-gnu"
    host = {"kind": "llvm", "mtriple": triple, "mcpu": mcpu, "num-cores": cores}
    return TargetSpec(
        name="host",
        description=f"this machine: {machine}, {mcpu}, {cores} cores (detected from /proc/cpuinfo)",
        host=host,
        board="detected",
    )


def _arm(mcpu: str, cores: int) -> dict[str, Any]:
    return {"kind": "llvm", "mtriple": AARCH64_TRIPLE, "mcpu": mcpu, "num-cores": cores}


def _cuda(arch: str) -> dict[str, Any]:
    return {"kind": "cuda", "arch": arch, "max_num_threads": 1024, "thread_warp_size": 32}


BOARDS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec(
            name="jetson-orin-nano",
            description="NVIDIA Jetson Orin Nano: 6x Cortex-A78AE + Ampere GPU (sm_87, 1024 CUDA cores)",
            host=_arm("cortex-a78ae", 6),
            device=_cuda("sm_87"),
            cross_compiler=AARCH64_CXX,
            board="Jetson Orin Nano module data sheet (JetPack 6)",
        ),
        TargetSpec(
            name="jetson-agx-orin",
            description="NVIDIA Jetson AGX Orin: 12x Cortex-A78AE + Ampere GPU (sm_87, 2048 CUDA cores)",
            host=_arm("cortex-a78ae", 12),
            device=_cuda("sm_87"),
            cross_compiler=AARCH64_CXX,
            board="Jetson AGX Orin series data sheet (JetPack 6)",
        ),
        TargetSpec(
            name="jetson-xavier-nx",
            description="NVIDIA Jetson Xavier NX: 6x Carmel (ARMv8.2) + Volta GPU (sm_72, 384 CUDA cores)",
            host=_arm("carmel", 6),
            device=_cuda("sm_72"),
            cross_compiler=AARCH64_CXX,
            board="Jetson Xavier NX data sheet (JetPack 5)",
        ),
        TargetSpec(
            name="raspberry-pi-5",
            description="Raspberry Pi 5: BCM2712, 4x Cortex-A76 at 2.4 GHz, CPU only",
            host=_arm("cortex-a76", 4),
            cross_compiler=AARCH64_CXX,
            board="Raspberry Pi 5 product brief",
            aliases=("rpi5",),
        ),
        TargetSpec(
            name="aarch64-generic",
            description="any 64-bit Arm Linux board (ARMv8-A baseline); what `make test-cross` runs under qemu",
            host=_arm("generic", 4),
            cross_compiler=AARCH64_CXX,
            board="ARMv8-A baseline",
        ),
    )
}

_CUDA_ARCH = re.compile(r"^cuda:(sm_\d{2,3}a?)$")


@lru_cache(maxsize=1)
def _host() -> TargetSpec:
    return detect_host()


@lru_cache(maxsize=None)
def tvm_target(name: str = "host") -> Any:
    """The TVM Target object of a named target (cached: kernel builds are keyed by it)."""
    return get_target(name).tvm_target()


def get_target(name: str) -> TargetSpec:
    """Resolve a target name: `host`, a board in BOARDS (or an alias), or `cuda:<sm_XX>`."""
    if name == "host":
        return _host()
    for spec in BOARDS.values():
        if name == spec.name or name in spec.aliases:
            return spec
    match = _CUDA_ARCH.match(name)
    if match:
        host = _host()
        arch = match.group(1)
        return TargetSpec(
            name=name,
            description=f"a generic NVIDIA GPU of architecture {arch}, driven by this machine's CPU",
            host=host.host,
            device=_cuda(arch),
            board="generic",
        )
    known = ", ".join(["host", *BOARDS, "cuda:<sm_XX>"])
    raise UsageError(f"unknown target {name!r} (known: {known})")


def list_targets() -> list[TargetSpec]:
    """Every named target, host first, then the boards, then an example generic CUDA target."""
    return [_host(), *BOARDS.values(), get_target("cuda:sm_90")]


def cross_compiler_available(spec: TargetSpec) -> bool:
    return spec.cross_compiler is None or shutil.which(spec.cross_compiler) is not None
