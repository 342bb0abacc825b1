"""The engines a bundle can run on, tried in the bundle's order: TensorRT (an engine built here,
on the board, because engines are not portable across GPUs and TensorRT versions), the TVM module
built for the target, ONNX Runtime on the verified ONNX. Each says why it cannot run, and the
runner reports which one ran and why the ones before it did not.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .check import BoardError


class Session(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass
class Opened:
    """The engine that will run, with what it is and what happened to the ones tried before it."""

    name: str
    session: Session
    precision: str
    notes: list[str] = field(default_factory=list)


class OrtSession:
    """ONNX Runtime on the bundle's verified ONNX: CUDA where the installed build has it, else CPU."""

    def __init__(self, model: Path) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as err:  # ORT raises its own types from C++
            raise BoardError(f"ONNX Runtime cannot load {model.name}: {str(err).strip().splitlines()[0]}") from None
        self.providers = self._session.get_providers()
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(self.output_names, inputs)))


def open_engine(root: Path, meta: dict[str, Any], choice: str, engine_dir: Path) -> Opened:
    """The first engine of the bundle's list (or `choice`) that can run here."""
    order = list(meta["engines"]) if choice == "auto" else [choice]
    unknown = [e for e in order if e not in OPENERS]
    if unknown or (choice != "auto" and choice not in meta["engines"]):
        raise BoardError(f"engine {choice!r} is not in this bundle (it has: {', '.join(meta['engines'])})")
    notes = []
    for name in order:
        try:
            opened = OPENERS[name](root, meta, engine_dir)
        except BoardError as err:
            if choice != "auto":
                raise
            notes.append(f"{name} not used: {err}")
            continue
        opened.notes = notes + opened.notes
        return opened
    raise BoardError("no engine of this bundle can run here: " + "; ".join(notes))


def _onnxruntime(root: Path, meta: dict[str, Any], engine_dir: Path) -> Opened:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise BoardError("onnxruntime is not installed (pip install onnxruntime)") from None
    session = OrtSession(root / meta["model"])
    precision = "int8 (QDQ)" if meta.get("int8") else "fp32"
    return Opened("onnxruntime", session, precision, [f"providers: {', '.join(session.providers)}"])


def _tvm(root: Path, meta: dict[str, Any], engine_dir: Path) -> Opened:
    tvm_meta = meta["tvm"]
    arch = tvm_meta["triple"].split("-")[0]
    if arch != platform.machine():
        raise BoardError(f"the TVM module is built for {arch}, this machine is {platform.machine()}")
    if not tvm_meta["module"].endswith(".so"):
        raise BoardError(f"the TVM module was not linked ({tvm_meta['module']}); link it on the board (README)")
    try:
        import tvm
    except ImportError:
        raise BoardError("the TVM runtime is not installed (pip install apache-tvm)") from None
    if tvm_meta["device"] == "cuda" and not tvm.cuda(0).exist:
        raise BoardError("the TVM module needs a CUDA GPU, and none is visible")
    from .tvm_module import TvmModule, configure_tvm_runtime

    configure_tvm_runtime()
    return Opened("tvm", TvmModule(root / tvm_meta["dir"], tvm_meta["device"]), "fp32")


def _tensorrt(root: Path, meta: dict[str, Any], engine_dir: Path) -> Opened:
    from . import trt

    reason = trt.available()
    if reason:
        raise BoardError(reason)
    settings = meta["tensorrt"]
    engine = engine_dir / "model.engine"
    notes = []
    try:
        if not engine.is_file():
            engine_dir.mkdir(parents=True, exist_ok=True)
            built = trt.build_engine(
                root / meta["model"], engine, fp16=settings["fp16"], int8=settings["int8"],
                sparse_weights=settings["sparse_weights"], timing_cache=engine_dir / "timing.cache",
                opt_level=settings["opt_level"], workspace_mib=settings["workspace_mib"], shapes=settings["shapes"],
            )
            notes.append(f"built the TensorRT engine here ({engine}): {built}")
        session = trt.TrtSession(engine)
    except trt.TrtError as err:
        raise BoardError(f"TensorRT: {err}") from None
    precision = "int8 (Q/DQ) + fp16" if settings["int8"] else ("fp16" if settings["fp16"] else "fp32")
    return Opened("tensorrt", session, precision, notes)


OPENERS = {"tensorrt": _tensorrt, "tvm": _tvm, "onnxruntime": _onnxruntime}
