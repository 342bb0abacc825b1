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
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from tridesign.errors import TridesignError, UsageError

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


def normalize(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """Weights out of the inputs, opset 17 at least, input shapes fixed, constants folded, shapes
    inferred; metadata kept.

    `input_shapes` (from `--input-shape`) are fixed before constant folding, so Shape subgraphs of
    a dynamic graph fold away and shape inference sees concrete sizes everywhere. Every failure of onnx, its converter or onnxscript's optimizer (they raise bare RuntimeErrors,
    ValidationErrors and more from C++) becomes a one-line TridesignError naming the stage.
    """
    check_operators(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    opset_in = default_opset(model)
    model = detach_initializers(model)
    if input_shapes:
        model = fix_input_shapes(model, input_shapes)
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
        shape = [_dim(d) for d in tensor.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        return {"name": value.name, "shape": shape, "dtype": dtype}

    return {
        "inputs": [describe(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [describe(v) for v in model.graph.output],
    }


def random_inputs(signature: list[dict], seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Seeded inputs for a user's graph: symbolic dims become `batch` (first axis) or 1."""
    check_input_memory(signature, batch)
    rng = np.random.default_rng(seed)
    inputs = {}
    for item in signature:
        shape = _example_dims(item["shape"], batch)
        dtype = np.dtype(item["dtype"])
        if np.issubdtype(dtype, np.floating):
            inputs[item["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            inputs[item["name"]] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[item["name"]] = rng.integers(0, 10, shape).astype(dtype)
    return inputs


def check_input_memory(signature: list[dict], batch: int = 1) -> None:
    """Refuse, before allocating, example inputs larger than half the memory available now: a
    declared shape of billions of elements would otherwise exhaust the machine (the inputs, the
    reference outputs and the runtime's own buffers all live at once)."""
    import psutil

    sizes = [(item["name"], _example_dims(item["shape"], batch), np.dtype(item["dtype"]).itemsize) for item in signature]
    total = sum(int(np.prod(shape, dtype=np.float64)) * itemsize for _, shape, itemsize in sizes)
    available = psutil.virtual_memory().available
    if total > available / 2:
        name, shape, _ = max(sizes, key=lambda s: float(np.prod(s[1], dtype=np.float64)) * s[2])
        raise UsageError(f"the example inputs would take {total / 2**30:.1f} GiB (largest: {name!r} {format_shape(shape)}), "
                         f"more than half of the {available / 2**30:.1f} GiB available: give smaller shapes with --input-shape")


def _example_dims(shape: Sequence[int | str], batch: int) -> list[int]:
    """The rule `random_inputs` sizes a symbolic dim by: the first axis is the batch, others 1."""
    return [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(shape)]


def defaulted_dims_notes(signature: list[dict], batch: int) -> list[str]:
    """One line per input whose symbolic dims the example inputs size by `_example_dims`' rule.

    A compile has to pick a size for every symbolic dim of its verification and profiling inputs;
    picking 1 for an image's height silently would profile a model nobody runs, so it says which
    dims it fixed to what, and how to choose instead.
    """
    notes = []
    for item in signature:
        sizes = _example_dims(item["shape"], batch)
        fixed = [
            f"{d}={sizes[axis]} (axis {axis}" + (", --batch)" if axis == 0 else ")")
            for axis, d in enumerate(item["shape"]) if not (isinstance(d, int) and d > 0)
        ]
        if fixed:
            notes.append(
                f"input {item['name']!r} {format_shape(item['shape'])}: symbolic dims fixed to {', '.join(fixed)} "
                f"in the example inputs; set them with --input-shape {item['name']}=DIMS"
            )
    return notes


def parse_input_shapes(items: Iterable[str]) -> dict[str, list[int]]:
    """`--input-shape NAME=DIMS` items (`x=1x3x224x224`) -> {name: dims}; each mistake a one-line UsageError.

    The name is everything before the last `=`: tensor names hold `/`, `:` and sometimes `=`, dims never.
    """
    shapes: dict[str, list[int]] = {}
    for item in items:
        name, sep, text = item.rpartition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--input-shape {item!r}: expected NAME=DIMS, e.g. x=1x3x224x224")
        if not name:
            raise UsageError(f"--input-shape {item!r}: the input name before '=' is empty")
        parts = [part.strip() for part in text.split("x")]
        if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
            raise UsageError(f"--input-shape {item!r}: dims must be positive integers joined by 'x', e.g. 1x3x224x224")
        if name in shapes:
            raise UsageError(f"--input-shape gives input {name!r} twice")
        shapes[name] = [int(part) for part in parts]
    return shapes


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs have the given shapes; shape inference is the caller's next step.

    A given shape must agree with the graph (same rank, same size on every fixed axis): a shape the
    graph cannot take would only fail later, deep inside a backend. A symbolic dim takes the given
    size, and so does the same symbol on every other input, since one name means one size (a batch
    `N` shared by two inputs); the same symbol given two sizes is refused.
    """
    model = copy.deepcopy(model)
    weights = {init.name for init in model.graph.initializer}
    inputs = {value.name: value for value in model.graph.input if value.name not in weights}
    unknown = [name for name in shapes if name not in inputs]
    if unknown:
        raise UsageError(f"--input-shape: the model has no input {unknown[0]!r}; its inputs are {', '.join(map(repr, inputs)) or 'none'}")
    symbols: dict[str, tuple[int, str]] = {}  # symbol -> (size, the input and axis that gave it)
    for name, given in shapes.items():
        tensor = inputs[name].type.tensor_type
        if not tensor.HasField("shape"):
            continue  # a rank the graph leaves open: any given shape is taken as it is
        expected = [_dim(d) for d in tensor.shape.dim]
        if len(expected) != len(given) or any(isinstance(e, int) and e != g for e, g in zip(expected, given)):
            raise UsageError(f"--input-shape: input {name!r} has shape {format_shape(expected)}, given {format_shape(given)}")
        for axis, (e, g) in enumerate(zip(expected, given)):
            if isinstance(e, str) and e != "?":
                size, where = symbols.setdefault(e, (g, f"{name!r} axis {axis}"))
                if size != g:
                    raise UsageError(f"--input-shape: symbolic dim {e!r} is {size} at input {where} but {g} at input {name!r} axis {axis}")
    for value in inputs.values():
        tensor = value.type.tensor_type
        given = shapes.get(value.name)
        if given is not None and not tensor.HasField("shape"):
            for size in given:
                tensor.shape.dim.add().dim_value = size
            continue
        for axis, dim in enumerate(tensor.shape.dim):
            known = isinstance(_dim(dim), int)
            size = given[axis] if given is not None else None if known else symbols.get(dim.dim_param, (None,))[0]
            if size is not None:
                dim.Clear()
                dim.dim_value = size
    return model


def symbolic_dims(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """Each symbolic dim of the graph's real inputs and outputs -> where it occurs (tensor, input or
    output, axis); a dim with no name is listed as '?'. What `--input-shape` can set, at a glance."""
    weights = {init.name for init in model.graph.initializer}
    found: dict[str, list[dict]] = {}
    values = [("input", v) for v in model.graph.input if v.name not in weights] + [("output", v) for v in model.graph.output]
    for kind, value in values:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            symbol = _dim(dim)
            if isinstance(symbol, str):
                found.setdefault(symbol, []).append({"tensor": value.name, "io": kind, "axis": axis})
    return found


def inspect_onnx(path: Path) -> dict[str, Any]:
    """What `tridesign inspect` reports on a user's ONNX file, as it is on disk (not normalized).

    Before compiling a file a user needs its input names and which dims are symbolic (what
    `--input-shape` must fix), and the opset and operators that decide whether it will import.
    Parameters are the initializers' elements; weights built by Constant nodes are not counted.
    """
    model = load_onnx(path)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if (node.domain or "") in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"
        ops[key] = ops.get(key, 0) + 1
    elements = [math.prod(init.dims) for init in model.graph.initializer]
    itemsizes = [np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize for init in model.graph.initializer]
    return {
        "file": str(path),
        "ir_version": model.ir_version,
        "opset_imports": [{"domain": imp.domain or "ai.onnx", "version": imp.version} for imp in model.opset_import],
        "producer": " ".join(filter(None, (model.producer_name, model.producer_version))) or None,
        **io_signature(model),
        "nodes": len(model.graph.node),
        "ops": dict(sorted(ops.items(), key=lambda item: (-item[1], item[0]))),
        "parameters": sum(elements),
        "parameter_bytes": sum(n * size for n, size in zip(elements, itemsizes)),
        "symbolic_dims": [{"name": name, "occurs": where} for name, where in symbolic_dims(model).items()],
    }


def format_shape(shape: Sequence[int | str]) -> str:
    """A shape the way `--input-shape` writes it (1x3xHxW); 'scalar' for rank 0."""
    return "x".join(map(str, shape)) or "scalar"


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str:
    """A dim's size, or its symbol ('?' when it has neither)."""
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?")


def _one_line(err: BaseException, limit: int = 300) -> str:
    """The error's message on one line: onnx's C++ messages break lines mid-sentence ("of node:\n")."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
