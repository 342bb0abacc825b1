"""Which tensors of an ONNX graph are trainable, and the graph rewrite that makes them inputs.

An inference engine bakes initializers into its plan; to change weights without rebuilding the
session, the selected initializers become graph inputs fed from one flat float32 vector θ.

Exporters name initializers badly after folding (`onnx::Conv_260` is ResNet-20's folded
`layer3.2.conv1`), so each parameter also gets a readable name from the node that consumes it:
the TorchScript scope `/layer3/layer3.2/conv1/Conv` and input slot 1 give `layer3.2.conv1.weight`.
A selector is a comma-separated list of fnmatch patterns matched against both names.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from tridesign.errors import UsageError

_SLOT_NAMES = {1: "weight", 2: "bias"}


@dataclass(frozen=True)
class Param:
    """One trainable tensor: where it lives in θ and what it is called."""

    name: str  # readable (module path), used by selectors and reports
    initializer: str  # the ONNX tensor name, which becomes the graph input name
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def materialize_aliases(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where `Identity(initializer)` nodes become initializers of their own.

    The TorchScript exporter deduplicates equal constants (e.g. folded conv biases that happen to
    match) and re-exposes them through Identity nodes; a finetune must be able to move each copy on
    its own, and a selector must see it as the parameter of its layer.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    kept = []
    for node in out.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            out.graph.initializer.append(copy)
        else:
            kept.append(node)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out


def readable_names(model: onnx.ModelProto) -> dict[str, str]:
    """initializer name -> readable name (the initializer's own name when it is already readable)."""
    names: dict[str, str] = {}
    consumers: dict[str, tuple[onnx.NodeProto, int]] = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, (node, slot))
    for init in model.graph.initializer:
        node_slot = consumers.get(init.name)
        if "::" not in init.name or node_slot is None or not node_slot[0].name.startswith("/"):
            names[init.name] = init.name
            continue
        node, slot = node_slot
        names[init.name] = f"{_module_path(node.name)}.{_SLOT_NAMES.get(slot, f'input{slot}')}"
    return names


def _module_path(node_name: str) -> str:
    """'/layer3/layer3.2/conv1/Conv' -> 'layer3.2.conv1' (scopes may repeat their parent's prefix)."""
    path = ""
    for part in node_name.strip("/").split("/")[:-1]:
        path = part if (not path or part.startswith(path + ".")) else f"{path}.{part}"
    return path or node_name.strip("/")


def select(model: onnx.ModelProto, selector: str) -> list[Param]:
    """The float initializers matched by `selector`, in graph order, laid out back to back in θ."""
    patterns = [p.strip() for p in selector.split(",") if p.strip()]
    if not patterns:
        raise UsageError("empty --params selector; give fnmatch patterns such as 'layer3.2.*' or 'fc.*'")
    readable = readable_names(model)
    params: list[Param] = []
    offset = 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        name = readable[init.name]
        if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(init.name, p) for p in patterns):
            params.append(Param(name, init.name, tuple(int(x) for x in init.dims), offset))
            offset += params[-1].size
    if not params:
        known = sorted({n for i, n in readable.items()})[:12]
        raise UsageError(f"--params {selector!r} matches no float parameter; some names: {', '.join(known)}")
    return params


def initial_theta(model: onnx.ModelProto, params: list[Param]) -> np.ndarray:
    """The selected initializers' current values, concatenated into one float32 vector."""
    inits = {i.name: i for i in model.graph.initializer}
    theta = np.empty(sum(p.size for p in params), dtype=np.float32)
    for p in params:
        theta[p.offset : p.offset + p.size] = numpy_helper.to_array(inits[p.initializer]).ravel()
    return theta


def as_inputs(model: onnx.ModelProto, params: list[Param]) -> onnx.ModelProto:
    """A copy of `model` whose selected initializers are graph inputs (after the data inputs)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chosen = {p.initializer for p in params}
    kept = [i for i in out.graph.initializer if i.name not in chosen]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    for p in params:
        out.graph.input.append(onnx.helper.make_tensor_value_info(p.initializer, onnx.TensorProto.FLOAT, p.shape))
    return out


def with_values(model: onnx.ModelProto, params: list[Param], theta: np.ndarray) -> onnx.ModelProto:
    """A copy of the original `model` (initializers intact) with the selected ones set from θ."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {p.initializer: p for p in params}
    for init in out.graph.initializer:
        p = by_name.get(init.name)
        if p is not None:
            value = theta[p.offset : p.offset + p.size].reshape(p.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    return out


def data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real data (not initializers listed as inputs by old exporters)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]
