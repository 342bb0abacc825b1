"""Loading the ONNX files users bring, and normalizing them into what every backend accepts.

Users bring old opsets, graphs with foldable constant subgraphs, and tensor names full of `/` and
`:`. Normalization upgrades the opset (onnx's version converter), folds constants (onnxscript's
optimizer) and re-runs the checker and shape inference, so backends see one well-formed form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from tridesign.errors import TridesignError

TARGET_OPSET = 17
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


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
        raise TridesignError(f"{path} is not a readable ONNX model ({type(err).__name__}: {_first_line(err)})") from None
    if not model.graph.node:
        raise TridesignError(f"{path} is not an ONNX model (no graph nodes; truncated or another format?)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise TridesignError(f"{path} fails the ONNX checker: {_first_line(err)}") from None
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


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Upgrade to at least opset 17, fold constant subgraphs, infer shapes; metadata is kept."""
    import onnxscript.optimizer

    check_operators(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    if default_opset(model) < TARGET_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
        except Exception as err:  # the converter raises bare RuntimeErrors from C++
            raise TridesignError(f"cannot upgrade opset {default_opset(model)} to {TARGET_OPSET}: {_first_line(err)}") from None
    model = onnxscript.optimizer.optimize(model)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    onnx.checker.check_model(model)
    for key, value in metadata.items():
        if not any(p.key == key for p in model.metadata_props):
            model.metadata_props.add(key=key, value=value)
    return model


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
