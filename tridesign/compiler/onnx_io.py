"""Loading the ONNX files users bring, and normalizing them into what every backend accepts.

Users bring old opsets, graphs with foldable constant subgraphs, and tensor names full of `/` and
`:`. Normalization upgrades the opset (onnx's version converter), folds constants (onnxscript's
optimizer) and re-runs the checker and shape inference, so backends see one well-formed form.
Files from older model zoos (IR version 3, opset 7-9) also list every weight as a graph input and
may build weights from Constant/ConstantOfShape nodes; `detach_initializers` and the constant
folding turn both into plain initializers first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from tridesign.errors import TridesignError

TARGET_OPSET = 17
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
Result = TypeVar("Result")


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read and check an ONNX file, turning every way it can be broken into a one-line error."""
    path = Path(path)
    if not path.exists():
        raise TridesignError(f"{path}: no such file")
    if path.is_dir():
        raise TridesignError(f"{path} is a directory, not an ONNX file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, RuntimeError, ValueError, OSError) as err:
        raise TridesignError(f"{path} is not a readable ONNX model ({type(err).__name__}: {_one_line(err)})") from None
    if not model.graph.node:
        raise TridesignError(f"{path} is not an ONNX model (no graph nodes; truncated or another format?)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise TridesignError(f"{path} fails the ONNX checker: {_one_line(err)}") from None
    return model


def check_operators(model: onnx.ModelProto) -> None:
    """Reject operators outside the standard ONNX domains, naming the op type and the node."""
    opset = {imp.domain: imp.version for imp in model.opset_import}
    for node in model.graph.node:
        domain = node.domain or ""
        if domain not in STANDARD_DOMAINS or not onnx.defs.has(node.op_type, domain):
            raise TridesignError(
                f"unsupported operator {node.op_type!r} (domain {domain or 'ai.onnx'!r}, opset "
                f"{opset.get(domain, '?')}) at node {node.name or '<unnamed>'!r}"
            )


def default_opset(model: onnx.ModelProto) -> int:
    return next((imp.version for imp in model.opset_import if imp.domain in ("", "ai.onnx")), 0)


def detach_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop initializers from the graph's inputs and raise the IR version to the target opset's.

    Before IR version 4 every initializer had to be listed as a graph input too; from IR 4 on, an
    input with an initializer of the same name means "this input, defaulting to that value". The
    toolchain treats such a tensor as a constant weight, never as an input a caller must or may
    feed: otherwise backends would demand the weights at run time and `io_signature` and
    `random_inputs` would treat them as data. The IR version is raised because opset 17 needs IR 8
    and the version converter adds initializers that IR 3 would reject for not being inputs.
    """
    model = copy.deepcopy(model)  # the caller's model keeps its inputs
    weights = {init.name for init in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    target = [onnx.helper.make_opsetid("", TARGET_OPSET)]
    model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for(target))
    return model


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights out of the inputs, opset 17 at least, constants folded, shapes inferred; metadata kept.

    Every failure of onnx, its converter or onnxscript's optimizer (they raise bare RuntimeErrors,
    ValidationErrors and more from C++) becomes a one-line TridesignError naming the stage.
    """
    check_operators(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    opset_in = default_opset(model)
    model = detach_initializers(model)
    if opset_in < TARGET_OPSET:
        upgrade = onnx.version_converter.convert_version
        model = _stage(f"cannot upgrade opset {opset_in} to {TARGET_OPSET}", upgrade, model, TARGET_OPSET)
    model = _stage("constant folding failed", fold_constants, model)
    model = _stage("shape inference failed", onnx.shape_inference.infer_shapes, model, strict_mode=False)
    _stage("the normalized model fails the ONNX checker", onnx.checker.check_model, model)
    for key, value in metadata.items():
        if not any(p.key == key for p in model.metadata_props):
            model.metadata_props.add(key=key, value=value)
    return model


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxscript's optimizer, which also folds ConstantOfShape (it keeps those by default).

    Older exporters wrote zero biases and filled weights as ConstantOfShape of a constant shape;
    folded, they become initializers like every other weight, which pruning, weight-sparsity
    accounting and the backends' kernel rewrites look for. The optimizer's output size limit
    (512 * 512 elements) still keeps large fills as nodes, so a mask does not bloat the file.
    """
    from onnxscript import ir
    from onnxscript.optimizer import optimize_ir

    def fold_fills(node: ir.Node) -> bool | None:
        return True if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx") else None

    graph = ir.serde.deserialize_model(model)
    optimize_ir(graph, should_fold=fold_fills)
    return ir.serde.serialize_model(graph)


def _stage(failure: str, func: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    try:
        return func(*args, **kwargs)
    except Exception as err:  # C++ and optimizer errors have no common base class
        raise TridesignError(f"{failure}: {_one_line(err)}") from None


def io_signature(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """Names, shapes (symbolic dims as strings) and dtypes of the graph's real inputs and outputs."""
    initializers = {init.name for init in model.graph.initializer}

    def describe(value: onnx.ValueInfoProto) -> dict:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        return {"name": value.name, "shape": shape, "dtype": dtype}

    return {
        "inputs": [describe(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [describe(v) for v in model.graph.output],
    }


def random_inputs(signature: list[dict], seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Seeded inputs for a user's graph: symbolic dims become `batch` (first axis) or 1."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for item in signature:
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(item["shape"])]
        dtype = np.dtype(item["dtype"])
        if np.issubdtype(dtype, np.floating):
            inputs[item["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            inputs[item["name"]] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[item["name"]] = rng.integers(0, 10, shape).astype(dtype)
    return inputs


def _one_line(err: BaseException, limit: int = 300) -> str:
    """The error's message on one line: onnx's C++ messages break lines mid-sentence ("of node:\n")."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
