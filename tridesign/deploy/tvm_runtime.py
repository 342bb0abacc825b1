"""The device side of TVM: import an ONNX model into Relax, and run a built TVM artifact from numpy.

What a board needs to run what `compile --backend tvm` built (`module.so` + `tvm_io.json`, see
tridesign.artifact) and what the on-device ZO engine needs to build its own modules: numpy, the
TVM runtime (and TVM's ONNX importer for `import_onnx`), the root contracts. Never torch, never
the compiler, which builds on `import_onnx` and loads its artifacts through `TvmSession`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.artifact import TVM_IO_FILE
from tridesign.errors import TridesignError
from tridesign.targets import configure_tvm_runtime, get_target


def import_onnx(model: Any, batch: int) -> tuple[Any, dict[str, Any]]:
    """ONNX → Relax with fixed input shapes and the weights bound as constants.

    Fixed shapes let TVM specialise every kernel (and let MetaSchedule tune it); a symbolic batch
    axis takes `batch`, any other symbolic axis is refused. Unsupported operators are reported with
    the op type and the first node that uses it, which TVM's own message does not name. Graph
    inputs that are not initializers (a ZO engine's trainable tensors) stay parameters of `main`.
    Returns the module and its I/O description: `inputs` (name, shape, dtype) and `outputs` in
    call order, and `notes` on the shapes fixed here.
    """
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    shapes: dict[str, list[int]] = {}
    dtypes: dict[str, str] = {}
    notes: list[str] = []
    for value in graph_inputs:
        tensor = value.type.tensor_type
        dims = []
        for axis, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif axis == 0:
                dims.append(batch)
                notes.append(f"input {value.name!r}: symbolic batch axis fixed to {batch}")
            else:
                raise TridesignError(
                    f"input {value.name!r} has a symbolic axis {axis} ({dim.dim_param or '?'}); "
                    "the TVM backend needs fixed shapes"
                )
        shapes[value.name] = dims
        dtypes[value.name] = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    try:
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except tvm.error.OpNotImplemented as err:
        unsupported = [n for n in model.graph.node if f" {n.op_type}" in f" {err}".replace(",", " ")]
        if not unsupported:
            raise TridesignError(f"TVM cannot import this model: {err}") from None
        node = unsupported[0]
        raise TridesignError(
            f"operator {node.op_type} (node {node.name or '<unnamed>'!r}) is not supported by TVM's ONNX importer"
        ) from None
    io = {
        "inputs": [{"name": n, "shape": shapes[n], "dtype": dtypes[n]} for n in shapes],
        "outputs": [o.name for o in model.graph.output],
        "notes": notes,
    }
    return mod, io


class TvmSession:
    """A loaded TVM artifact: the Relax VM over the module, fed and read by ONNX names."""

    def __init__(self, artifact_dir: Path) -> None:
        import tvm
        from tvm import relax

        configure_tvm_runtime()
        io = json.loads((artifact_dir / TVM_IO_FILE).read_text())
        spec = get_target(io["target"]) if io["target"] != "host" else None
        if spec is not None and not spec.runs_here:
            raise TridesignError(
                f"artifact {artifact_dir} is built for {io['target']} and cannot run on this machine; "
                "run it on the board (tridesign profile --remote)"
            )
        module_path = artifact_dir / io["module"]
        if not module_path.exists():
            raise TridesignError(f"artifact {artifact_dir} has no {io['module']}")
        self.input_names: list[str] = [i["name"] for i in io["inputs"]]
        self.output_names: list[str] = list(io["outputs"])
        self._dtypes = {i["name"]: i["dtype"] for i in io["inputs"]}
        self.device = tvm.cuda(0) if spec is not None and spec.device is not None else tvm.cpu()
        self.module = tvm.runtime.load_module(str(module_path))
        self.vm = relax.VirtualMachine(self.module, self.device)
        self._staging: dict[str, tuple[np.ndarray, Any]] = {}

    def arguments(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        """The VM's arguments for `inputs`; on the CPU they alias this session's staging buffers."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise TridesignError(f"missing inputs: {', '.join(missing)} (the model takes {self.input_names})")
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
            raise TridesignError(f"module returned {len(outputs)} outputs, expected {len(self.output_names)}")
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
