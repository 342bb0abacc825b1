"""TensorRT on the board: build an engine from a bundle's ONNX, the same build as a `trtexec` line,
and run an engine from numpy.

Imports the standard library and numpy at module level; `tensorrt` only inside functions, and the
CUDA runtime (libcudart) through ctypes, so that nothing beyond what JetPack ships is needed (no
pycuda, no cuda-python, no torch).

Precision, by TensorRT major version (checked against NVIDIA/TensorRT's Python bindings,
python/src/infer/pyCore.cpp, on the release/10.3 branch and the 11.1 OSS release, and the
"Migrating from TensorRT 10.x to 11.x" pages):
* 10.x (JetPack 6.1/6.2 ship 10.3) builds weakly typed networks: `fp16` sets BuilderFlag.FP16;
  `int8` sets BuilderFlag.INT8 only so that the Q/DQ nodes of the int8 ONNX are honoured (explicit
  quantization). No calibrator is ever set: calibrators are deprecated since 10.1.
* 11.x removed BuilderFlag.FP16/INT8 and the calibrators; every network is strongly typed
  (NetworkDefinitionCreationFlag.STRONGLY_TYPED is "deprecated: always enabled"). Precision is what
  the ONNX's own types say: FP16 needs an ONNX converted beforehand (ModelOpt AutoCast), INT8 comes
  from Q/DQ nodes. The build record then lists the types the parsed network carries.
* 8.6 (JetPack 6.0, from memory, not checked here) still needs the EXPLICIT_BATCH creation flag for
  the ONNX parser; 10.x ignores it and 11.x no longer has it, so it is passed below 10 only.

Dynamic input dimensions (the models export a dynamic batch) get one optimization profile with
min = opt = max: the caller's `shapes`, else every dynamic dimension set to 1 (what trtexec does
when --shapes is not given).

Not verified here (no GPU, no TensorRT on the machine this was written on): a real build and run;
that TensorRT and libcudart share the primary CUDA context (they should: TensorRT uses the runtime
API); the libcudart name on JetPack (libcudart.so.12 under /usr/local/cuda/lib64, registered with
ldconfig by the CUDA packages, is the expectation). The tests marked `tensorrt` and `gpu` check it
where TensorRT and a GPU exist.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shlex
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Tried in order: the unversioned name (CUDA toolkit installed), then CUDA 13 and 12 runtimes, each
# on the loader path and then in /usr/local/cuda/lib64 (JetPack's toolkit location).
CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12")
CUDART_DIRS = ("", "/usr/local/cuda/lib64/")
_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind


class TrtError(Exception):
    """TensorRT or CUDA refused: a bad ONNX, a failed build, an engine that does not load or run.
    The message is one paragraph meant for the user, with TensorRT's own errors in it."""


def available() -> str | None:
    """None when `tensorrt` imports and a CUDA device is usable; otherwise the reason, for the user."""
    try:
        _import_trt()
        cuda = _cudart()
    except TrtError as err:
        return str(err)
    count = ctypes.c_int(0)
    status = cuda.cudaGetDeviceCount(ctypes.byref(count))
    if status != 0:
        return f"no usable CUDA device: {_cuda_error(cuda, status)}"
    return None if count.value > 0 else "no CUDA device"


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    fp16: bool = True,
    int8: bool = False,
    sparse_weights: bool = False,
    timing_cache: str | Path | None = None,
    opt_level: int = 3,
    workspace_mib: int = 1024,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Build a serialized engine from `onnx_path` into `engine_path` (written atomically) and
    return what was built: TensorRT version, typing, precision, sparse, seconds, bytes, layers.

    `timing_cache` is loaded when the file exists and saved back (atomically) after the build, so a
    second build of the same model on the same board skips the kernel timing. `shapes` fixes the
    dynamic input dimensions (name -> full shape).
    """
    trt = _import_trt()
    if not 0 <= opt_level <= 5:
        raise TrtError(f"builder optimization level must be 0..5, not {opt_level}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    _parse(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    notes = _configure(trt, config, fp16=fp16, int8=int8, sparse_weights=sparse_weights, opt_level=opt_level,
                       workspace_mib=workspace_mib)
    fixed = _fix_dynamic_shapes(builder, network, config, shapes or {})
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        notes += _load_timing_cache(config, cache_path)
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        raise TrtError(f"TensorRT could not build {onnx_path.name}: {_joined(logger.errors) or 'no reason given'}")
    _write_atomic(engine_path, plan)
    if cache_path is not None:
        _write_atomic(cache_path, config.get_timing_cache().serialize())
    return {
        "tensorrt": trt.__version__,
        "typing": "strong" if _major(trt) >= 11 else "weak",
        "precision": _precision_name(trt, network, fp16, int8),
        "sparse_weights": sparse_weights,
        "opt_level": opt_level,
        "workspace_mib": workspace_mib,
        "shapes": fixed,
        "build_seconds": round(seconds, 3),
        "engine_bytes": engine_path.stat().st_size,
        "network_layers": network.num_layers,  # before fusion; the engine's count would need a load
        "notes": notes,
    }


def trtexec_command(
    onnx_name: str,
    engine_name: str,
    *,
    fp16: bool,
    int8: bool,
    sparse_weights: bool,
    timing_cache: str | None,
    opt_level: int,
    workspace_mib: int,
    shapes: Mapping[str, Sequence[int]] | None = None,
    trt_major: int = 10,
) -> str:
    """The `trtexec` line that builds what `build_engine` builds, for the bundle README.

    Checked against samples/common/sampleOptions.cpp of TensorRT 8.6, 10.3, 10.13 and 11.1: trtexec
    11 has no --fp16/--int8 (strong typing), so they are left out for `trt_major` >= 11; the pool
    size carries no unit suffix because 10.x/11.x read a bare number as MiB and 8.6 cannot parse one.
    """
    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if trt_major < 11:
        args += ["--fp16"] * fp16 + ["--int8"] * int8  # --int8 honours the ONNX's Q/DQ nodes
    if sparse_weights:
        args.append("--sparsity=enable")
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    args += [f"--builderOptimizationLevel={opt_level}", f"--memPoolSize=workspace:{workspace_mib}"]
    if shapes:
        args.append("--shapes=" + ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in shapes.items()))
    return " ".join(shlex.quote(arg) for arg in args)


class TrtSession:
    """An engine loaded for inference: `run({name: array}) -> {name: array}` on one CUDA stream.

    Device buffers are allocated per I/O tensor on first use and grown when a larger input comes;
    `close()` (or leaving a `with` block) frees them.
    """

    def __init__(self, engine_path: str | Path) -> None:
        trt = _import_trt()
        self._trt, self._cuda = trt, _cudart()
        logger = _logger(trt)
        self._runtime = trt.Runtime(logger)
        path = Path(engine_path)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise TrtError(f"{path}: TensorRT could not load this engine (built by another TensorRT version or for "
                           f"another GPU?): {_joined(logger.errors) or 'no reason given'}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) != mode]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        stream = ctypes.c_void_p()
        self._check(self._cuda.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        self._stream = stream

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.input_names) - set(feeds))
        if missing:
            raise TrtError(f"missing inputs {missing}; the engine takes {self.input_names}")
        # The inputs' contiguous host copies stay referenced until the stream is synchronized.
        hosts = [self._bind_input(name, feeds[name]) for name in self.input_names]
        outputs = {name: self._bind_output(name) for name in self.output_names}
        if not self._context.execute_async_v3(self._stream.value or 0):
            raise TrtError("TensorRT failed to enqueue the engine (execute_async_v3 returned False)")
        for name, out in outputs.items():
            self._copy(out.ctypes.data, self._buffers[name][0], out.nbytes, _DEVICE_TO_HOST)
        self._check(self._cuda.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        hosts.clear()
        return outputs

    def close(self) -> None:
        for pointer, _ in self._buffers.values():
            self._cuda.cudaFree(ctypes.c_void_p(pointer))
        self._buffers.clear()
        if self._stream.value:
            self._cuda.cudaStreamDestroy(self._stream)
            self._stream = ctypes.c_void_p()

    def __enter__(self) -> TrtSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bind_input(self, name: str, value: np.ndarray) -> np.ndarray:
        dtype = self._trt.nptype(self._engine.get_tensor_dtype(name))
        try:
            host = np.ascontiguousarray(np.asarray(value).astype(dtype, casting="same_kind", copy=False))
        except TypeError:
            raise TrtError(f"input {name!r}: {np.asarray(value).dtype} cannot be cast to the engine's {np.dtype(dtype)}") from None
        expected = tuple(self._engine.get_tensor_shape(name))
        if len(expected) != host.ndim or any(e not in (-1, s) for e, s in zip(expected, host.shape)):
            raise TrtError(f"input {name!r} has shape {host.shape}, the engine takes {expected} (-1: any)")
        if -1 in expected and not self._context.set_input_shape(name, host.shape):
            raise TrtError(f"input {name!r}: shape {host.shape} is outside the engine's optimization profile")
        pointer = self._device(name, host.nbytes)
        self._copy(pointer, host.ctypes.data, host.nbytes, _HOST_TO_DEVICE)
        self._context.set_tensor_address(name, pointer)
        return host

    def _bind_output(self, name: str) -> np.ndarray:
        shape = tuple(self._context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise TrtError(f"output {name!r} has a data-dependent shape {shape}; not supported on the board")
        out = np.empty(shape, dtype=self._trt.nptype(self._engine.get_tensor_dtype(name)))
        self._context.set_tensor_address(name, self._device(name, out.nbytes))
        return out

    def _device(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for tensor `name`, reused across runs."""
        pointer, size = self._buffers.get(name, (0, 0))
        if size >= max(nbytes, 1):
            return pointer
        if pointer:
            self._cuda.cudaFree(ctypes.c_void_p(pointer))
            del self._buffers[name]
        new = ctypes.c_void_p()
        self._check(self._cuda.cudaMalloc(ctypes.byref(new), max(nbytes, 1)), f"cudaMalloc({nbytes}) for {name!r}")
        self._buffers[name] = (new.value, max(nbytes, 1))
        return new.value

    def _copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        if nbytes:
            status = self._cuda.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), nbytes, kind, self._stream)
            self._check(status, "cudaMemcpyAsync")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise TrtError(f"{what} failed: {_cuda_error(self._cuda, status)}")


def _import_trt() -> Any:
    try:
        import tensorrt
    except ImportError as err:
        raise TrtError(f"TensorRT's Python package is not installed ({err})") from None
    except OSError as err:  # the package is there, its libnvinfer is not
        raise TrtError(f"TensorRT's libraries cannot be loaded ({err})") from None
    return tensorrt


def _major(trt: Any) -> int:
    return int(trt.__version__.split(".")[0])


def _network_flags(trt: Any) -> int:
    if _major(trt) < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _configure(trt: Any, config: Any, *, fp16: bool, int8: bool, sparse_weights: bool, opt_level: int,
               workspace_mib: int) -> list[str]:
    """Set the builder flags, optimization level and workspace pool; return notes for the record."""
    flags, notes = _precision(trt, fp16, int8)
    if sparse_weights:
        flags.append(trt.BuilderFlag.SPARSE_WEIGHTS)
    for flag in flags:
        config.set_flag(flag)
    config.builder_optimization_level = opt_level
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    return notes


def _precision(trt: Any, fp16: bool, int8: bool) -> tuple[list[Any], list[str]]:
    """Builder flags for the requested precision, and notes for the build record."""
    if _major(trt) >= 11:
        notes = []
        if fp16:
            notes.append("TensorRT 11 is strongly typed: FP16 layers come from the ONNX's own float16 types "
                         "(convert it with ModelOpt AutoCast), not from a builder flag")
        if int8:
            notes.append("INT8 comes from the ONNX's Q/DQ nodes (explicit quantization)")
        return [], notes
    return [trt.BuilderFlag.FP16] * fp16 + [trt.BuilderFlag.INT8] * int8, []


def _precision_name(trt: Any, network: Any, fp16: bool, int8: bool) -> str:
    """What the engine may run in: the requested flags on TensorRT < 11, the network's own tensor
    types on a strongly typed TensorRT 11 network (e.g. 'FLOAT+HALF')."""
    if _major(trt) >= 11:
        types = {network.get_layer(i).get_output(j).dtype.name
                 for i in range(network.num_layers) for j in range(network.get_layer(i).num_outputs)}
        return "+".join(sorted(types))
    return "+".join(["int8"] * int8 + ["fp16"] * fp16) or "fp32"


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    """Parse the ONNX file (by path, so external weight files next to it are found)."""
    if not onnx_path.is_file():
        raise TrtError(f"{onnx_path}: no such ONNX file")
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return
    errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    raise TrtError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {_joined(errors or logger.errors) or 'no reason given'}")


def _parser_error(error: Any) -> str:
    """'node (Op): description'; TensorRT 8.6's errors carry no node name or operator."""
    name = error.node_name() if hasattr(error, "node_name") else ""
    operator = error.node_operator() if hasattr(error, "node_operator") else ""
    where = f"{name} ({operator})" if operator else name
    return f"{where}: {error.desc()}" if where else str(error.desc())


def _fix_dynamic_shapes(builder: Any, network: Any, config: Any, shapes: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """One optimization profile pinning every dynamic input to one shape; returns the pinned shapes."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [tensor for tensor in inputs if any(d < 0 for d in tensor.shape)]
    if not dynamic:
        return {}
    profile = builder.create_optimization_profile()
    fixed = {}
    for tensor in dynamic:
        shape = tuple(shapes.get(tensor.name) or (d if d >= 0 else 1 for d in tensor.shape))
        if len(shape) != len(tensor.shape):
            raise TrtError(f"shape {list(shape)} for input {tensor.name!r} does not match its rank {len(tensor.shape)}")
        profile.set_shape(tensor.name, shape, shape, shape)
        fixed[tensor.name] = list(shape)
    config.add_optimization_profile(profile)
    return fixed


def _load_timing_cache(config: Any, path: Path) -> list[str]:
    """Attach the timing cache stored at `path` (an empty one when there is none); a cache TensorRT
    refuses (another GPU or TensorRT version) is replaced by an empty one, and a note says so."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, False):
        return []
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return [f"timing cache {path.name} was not usable here (another GPU or TensorRT version); a new one is written"]


def _logger(trt: Any) -> Any:
    """A TensorRT logger that keeps error messages (for the exception) and drops the rest."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return Logger()


def _joined(messages: Sequence[str]) -> str:
    return "; ".join(" ".join(str(m).split()) for m in messages)


def _write_atomic(path: Path, data: Any) -> None:
    """Write bytes-like `data` to a temporary sibling of `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(memoryview(data))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.cache
def _cudart() -> ctypes.CDLL:
    """The CUDA runtime library, with the signatures of the few calls used here."""
    tried = []
    for directory in CUDART_DIRS:
        for name in CUDART_NAMES:
            try:
                lib = ctypes.CDLL(directory + name)
            except OSError:
                tried.append(directory + name)
                continue
            _declare(lib)
            return lib
    raise TrtError(f"cannot load the CUDA runtime (tried {', '.join(tried)}); add its folder to LD_LIBRARY_PATH")


def _declare(lib: ctypes.CDLL) -> None:
    ptr, size = ctypes.c_void_p, ctypes.c_size_t
    signatures = {
        "cudaGetDeviceCount": [ctypes.POINTER(ctypes.c_int)],
        "cudaMalloc": [ctypes.POINTER(ptr), size],
        "cudaFree": [ptr],
        "cudaMemcpyAsync": [ptr, ptr, size, ctypes.c_int, ptr],
        "cudaStreamCreate": [ctypes.POINTER(ptr)],
        "cudaStreamSynchronize": [ptr],
        "cudaStreamDestroy": [ptr],
    }
    for name, argtypes in signatures.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = ctypes.c_int
    lib.cudaGetErrorString.argtypes = [ctypes.c_int]
    lib.cudaGetErrorString.restype = ctypes.c_char_p


def _cuda_error(cuda: ctypes.CDLL, status: int) -> str:
    return f"{cuda.cudaGetErrorString(status).decode(errors='replace')} (cudaError {status})"
