"""The device side of TVM: import an ONNX model into Relax, and run a built TVM artifact from numpy.

What a board needs to run what `compile --backend tvm` built (`module.so` + `tvm_io.json`, see
tridesign.artifact) and what the on-device ZO engine needs to build its own modules: numpy, the
TVM runtime (and TVM's ONNX importer for `import_onnx`), the root contracts. Never torch, never
the compiler, which builds on `import_onnx` and loads its artifacts through `TvmSession`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tridesign.board.check import BoardError
from tridesign.board.tvm_module import TvmModule, configure_tvm_runtime, read_io
from tridesign.errors import TridesignError
from tridesign.targets import get_target


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


class TvmSession(TvmModule):
    """A TVM artifact loaded here: the board's TvmModule, on the device its target names, after the
    registry says the artifact can run on this machine."""

    def __init__(self, artifact_dir: Path) -> None:
        configure_tvm_runtime()
        io = read_io(artifact_dir)
        spec = get_target(io["target"]) if io["target"] != "host" else None
        if spec is not None and not spec.runs_here:
            raise TridesignError(
                f"artifact {artifact_dir} is built for {io['target']} and cannot run on this machine; "
                "run it on the board (tridesign profile --remote)"
            )
        try:
            super().__init__(artifact_dir, "cuda" if spec is not None and spec.device is not None else "cpu")
        except BoardError as err:
            raise TridesignError(str(err)) from None

    def arguments(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        try:
            return super().arguments(inputs)
        except BoardError as err:
            raise TridesignError(str(err)) from None
