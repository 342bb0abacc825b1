"""Run a TVM module built by `tridesign compile --backend tvm` from numpy, and the process settings
TVM needs here: the board's half of tridesign.deploy.tvm_runtime.

`module.so` + `tvm_io.json` (input and output names in call order) are all a Relax VM needs; the
caller says on which device. Imports numpy and the TVM runtime only.
"""

from __future__ import annotations

import json
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .check import BoardError

IO_FILE = "tvm_io.json"  # the name tridesign.artifact.TVM_IO_FILE gives it


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def configure_tvm_runtime() -> None:
    """Process settings every TVM run needs: the thread pool size and scratch memory reuse.

    Called where a TVM module is built or loaded (kernel builds, the TVM backend and its sessions,
    tuning, the board runner), never at import: an ONNX-Runtime-only run keeps the process's malloc
    settings. Once per process; TVM reads the thread count when it first creates its pool.
    """
    configure_tvm_threads()
    keep_scratch_memory()


def configure_tvm_threads() -> int:
    """Size TVM's CPU thread pool to the cores this process may use, unless TVM_NUM_THREADS is set.

    TVM's default is half the hardware threads on x86 (it assumes SMT siblings), which on a 2-core
    VM is a single thread: every TVM run was single-threaded against a two-thread ONNX Runtime.
    TVM reads the variable when it first creates its pool, so this runs before the first TVM module
    is built or loaded; MetaSchedule's runner processes inherit it.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))
    return int(os.environ["TVM_NUM_THREADS"])


def keep_scratch_memory() -> bool:
    """Stop glibc from handing freed scratch memory back to the OS; True where that applied.

    TVM kernels take their scratch (a conv's padded input copy, Winograd's transformed tiles: up
    to 7 MB per ResNet-18 layer) from a workspace pool that frees and reallocates a block when
    consecutive kernels ask for different sizes, and glibc serves blocks of 128 KiB and more with
    mmap and unmaps them on free, so inside a network every kernel page-faulted its scratch back in.
    Measured on ResNet-18 (2 cores): a Winograd 28×28 layer took 1.42 ms in the network against
    0.66 ms alone, and 0.72 ms in the network with this; the whole network 27.9 → 20.6 ms. The
    mmap threshold goes to glibc's maximum (32 MiB) and trimming off, so freed blocks stay in the
    heap for the next kernel. Processes without glibc keep their allocator's behaviour.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def read_io(artifact_dir: Path) -> dict[str, Any]:
    """The module's file name, input names/shapes/dtypes and output names, as compile wrote them."""
    path = Path(artifact_dir) / IO_FILE
    if not path.is_file():
        raise BoardError(f"{artifact_dir}: no {IO_FILE}; not a TVM build")
    return json.loads(path.read_text())


class TvmModule:
    """A built TVM module in a Relax VM on `device` ("cpu" or "cuda"), fed and read by ONNX names."""

    def __init__(self, artifact_dir: Path, device: str = "cpu") -> None:
        import tvm
        from tvm import relax

        io = read_io(artifact_dir)
        module_path = Path(artifact_dir) / io["module"]
        if not module_path.exists():
            raise BoardError(f"{artifact_dir} has no {io['module']}")
        self.input_names: list[str] = [i["name"] for i in io["inputs"]]
        self.output_names: list[str] = list(io["outputs"])
        self._dtypes = {i["name"]: i["dtype"] for i in io["inputs"]}
        self.device = tvm.cuda(0) if device == "cuda" else tvm.cpu()
        self.module = tvm.runtime.load_module(str(module_path))
        self.vm = relax.VirtualMachine(self.module, self.device)
        self._staging: dict[str, tuple[np.ndarray, Any]] = {}

    def arguments(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        """The VM's arguments for `inputs`; on the CPU they alias this session's staging buffers."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BoardError(f"missing inputs: {', '.join(missing)} (the model takes {self.input_names})")
        return [self._argument(n, inputs[n]) for n in self.input_names]

    def _argument(self, name: str, array: np.ndarray) -> Any:
        """A CPU input is copied into a 64-byte-aligned buffer that a TVM tensor shares (DLPack).

        Why: a fresh `tvm.runtime.tensor` per call cost 23 µs for ResNet-20's 12 KB input and
        reading the output with `.numpy()` 10 µs, 6% of that network's 0.55 ms; the copy into the
        staging buffer costs 0.6 µs. A new shape (dynamic batch) gets its own buffer.
        """
        import tvm

        dtype = np.dtype(self._dtypes[name])
        if self.device.dlpack_device_type() != tvm.cpu().dlpack_device_type():
            return tvm.runtime.tensor(np.ascontiguousarray(array, dtype=dtype), self.device)
        array = np.asarray(array)
        staged = self._staging.get(name)
        if staged is None or staged[0].shape != array.shape:
            buffer = aligned_empty(array.shape, dtype)
            staged = self._staging[name] = (buffer, tvm.runtime.from_dlpack(buffer))
        np.copyto(staged[0], array, casting="unsafe")
        return staged[1]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = flatten(self.vm["main"](*self.arguments(inputs)))
        if len(outputs) != len(self.output_names):
            raise BoardError(f"module returned {len(outputs)} outputs, expected {len(self.output_names)}")
        return dict(zip(self.output_names, outputs))


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary (TVM's DLPack import needs 64)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def flatten(value: Any) -> list[np.ndarray]:
    """VM results are a tensor or (nested) tuples of tensors; ONNX outputs are a flat list.

    CPU results are copied through a DLPack view (0.4 µs + the copy; `.numpy()` took 10 µs): a copy,
    because an output may be a module constant or an input's staging buffer.
    """
    if hasattr(value, "numpy"):
        if value.device.dlpack_device_type() == 1:  # kDLCPU
            return [np.from_dlpack(value).copy()]
        return [value.numpy()]
    return [array for item in value for array in flatten(item)]
