"""ONNX graph → the list of layers the accelerator executes.

Every Conv (grouped and depthwise too), Gemm and MatMul (batched, attention's QKᵀ and AV included)
becomes a GEMM of `groups` independent (M × K)·(K × N) products for the systolic array; pooling,
activations, normalisation and element-wise ops run on the vector unit; pure data movement
(Reshape, Transpose, Concat, ...) costs nothing here. Shapes come from ONNX shape inference, so
any file works, not only the zoo's; symbolic dimensions (a dynamic batch) count as 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from tridesign.annotations import DataSparsity, read_data_sparsity, read_weight_sparsity
from tridesign.errors import TridesignError

FREE_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather",
    "Shape", "Constant", "ConstantOfShape", "Identity", "Cast", "Expand", "Dropout", "Range", "Tile",
    "Pad", "Resize", "Upsample", "QuantizeLinear", "DequantizeLinear",
})
# Vector-unit operations per output element; everything not listed costs 1.
VECTOR_COST = {"Softmax": 5, "LayerNormalization": 5, "Sigmoid": 4, "Tanh": 4, "Erf": 6, "Gelu": 8,
               "HardSwish": 3, "BatchNormalization": 2, "InstanceNormalization": 5, "Exp": 4, "Sqrt": 4}
POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"})


@dataclass
class Layer:
    """One operation as the accelerator sees it (element counts are per inference)."""

    name: str
    op_type: str
    kind: str  # "gemm" (systolic array) or "vector"
    M: int = 0  # output rows of one GEMM (pixels x batch for a conv)
    K: int = 0  # reduction length
    N: int = 0  # output columns (output channels of one group)
    groups: int = 1  # independent GEMMs (conv groups, attention heads x batch)
    vector_ops: int = 0
    ifmap_elems: int = 0
    filter_elems: int = 0
    ofmap_elems: int = 0
    spatial: bool = False  # output has H x W: inactive tiles can be skipped
    scalesim_M: int = 0  # M as SCALE-Sim computes it from the pre-padded input (no dilation)
    weight_name: str | None = None
    weight_density: float = 1.0  # non-zero fraction of the weight
    weight_pattern: str = "dense"
    weight_layout: str = "nk"  # how the stored weight is laid out: conv/Gemm-transB "nk", MatMul "kn"
    weight_mask: np.ndarray | None = field(default=None, repr=False)  # (groups*N, K) when sparse
    kernel_elems: int = 1  # kh*kw of a conv (K = in/groups * kernel_elems, channel-major); 1 for a matmul
    inputs: list[tuple[str, int]] = field(default_factory=list)  # (producing tensor, elements)
    output: str = ""
    word_bits: int | None = None  # 8 when the graph feeds it quantized tensors (int8 QDQ); None: the device's words

    @property
    def macs(self) -> int:
        return self.M * self.K * self.N * self.groups


@dataclass
class Workload:
    name: str
    layers: list[Layer]
    data_sparsity: DataSparsity | None = None

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def load_workload(source: str | Path | onnx.ModelProto, name: str | None = None) -> Workload:
    """Read an ONNX file (or model) into a Workload with its sparsity annotations applied."""
    model = onnx.load(str(source)) if not isinstance(source, onnx.ModelProto) else source
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as err:  # noqa: BLE001 - onnx raises several unrelated types here
        raise TridesignError(f"ONNX shape inference failed: {str(err).splitlines()[0]}") from None
    graph = model.graph
    shapes = {v.name: _dims(v) for v in [*graph.input, *graph.output, *graph.value_info]}
    inits = {t.name: t for t in graph.initializer}
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    records = read_weight_sparsity(model)
    quantized = _quantized_tensors(graph)
    alias: dict[str, str] = {}  # a free op's output is its first input, moved or reshaped
    layers = []
    for i, node in enumerate(graph.node):
        layer = _layer(node, i, shapes)
        if layer is None:
            for out in node.output:
                alias[out] = alias.get(node.input[0], node.input[0]) if node.input else out
            continue
        layer.output = node.output[0]
        layer.inputs = [(alias.get(x, x), math.prod(shapes.get(x) or [0])) for x in node.input
                        if x and x not in inits]
        if layer.weight_name is not None:
            # An int8 (QDQ) graph feeds the weight through DequantizeLinear: its stored int8 tensor
            # (and the annotation, rekeyed to it by the int8 pass) holds the zeros.
            stored = alias.get(layer.weight_name, layer.weight_name)
            _attach_sparsity(layer, records.get(stored) or records.get(layer.weight_name), inits.get(stored))
        operands = [*node.input[:1], *([layer.weight_name] if layer.weight_name is not None else [])]
        if operands and all(name in quantized for name in operands):
            layer.word_bits = 8
        layers.append(layer)
    if not layers:
        raise TridesignError("the ONNX graph has no operation the accelerator executes")
    label = name or (Path(source).stem if not isinstance(source, onnx.ModelProto) else graph.name or "model")
    return Workload(label, layers, read_data_sparsity(model))


def _quantized_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors that carry 8-bit values: 8-bit initializers, QuantizeLinear outputs, and the
    DequantizeLinear outputs of either. An int8 (QDQ) graph feeds its layers these, so the
    accelerator stores, moves and multiplies 8-bit words there."""
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    names = {t.name for t in graph.initializer if t.data_type in eight_bit}
    names |= {node.output[0] for node in graph.node if node.op_type == "QuantizeLinear" and node.output}
    return names | {node.output[0] for node in graph.node
                    if node.op_type == "DequantizeLinear" and node.output and node.input[0] in names}


def _layer(node: onnx.NodeProto, index: int, shapes: dict[str, list[int] | None]) -> Layer | None:
    op = node.op_type
    if op in FREE_OPS:
        return None
    name = node.name or f"{op}_{index}"
    out = shapes.get(node.output[0]) if node.output else None
    inp = shapes.get(node.input[0]) if node.input else None
    if out is None or inp is None:
        raise TridesignError(f"node {name} ({op}): shape inference left its shape unknown")
    if op == "Conv":
        return _conv(node, name, inp, shapes[node.input[1]], out)
    if op in ("Gemm", "MatMul"):
        return _matmul(node, name, inp, shapes[node.input[1]], out)
    out_elems = math.prod(out)
    spatial = len(out) >= 4
    if op in POOL_OPS:
        window = math.prod(inp[2:]) if op.startswith("Global") else math.prod(_attrs(node)["kernel_shape"])
        return Layer(name, op, "vector", vector_ops=out_elems * window, ifmap_elems=math.prod(inp),
                     ofmap_elems=out_elems, spatial=spatial)
    inputs = sum(math.prod(shapes.get(x) or [0]) for x in node.input if x)
    return Layer(name, op, "vector", vector_ops=out_elems * VECTOR_COST.get(op, 1), ifmap_elems=inputs,
                 ofmap_elems=out_elems, spatial=spatial)


def _conv(node: onnx.NodeProto, name: str, inp: list[int], w: list[int], out: list[int]) -> Layer:
    a = _attrs(node)
    groups = int(a.get("group", 1))
    batch, cin = inp[0], inp[1]
    kout, cin_g, *kernel = w
    spatial_out = out[2:]
    strides = a.get("strides", [1] * len(kernel))
    pads = a.get("pads", [0] * 2 * len(kernel))
    padded = [inp[2 + d] + pads[d] + pads[d + len(kernel)] for d in range(len(kernel))]
    # SCALE-Sim: ofmap = ceil((padded - kernel + stride) / stride), dilation unsupported.
    ss_out = [math.ceil((padded[d] - kernel[d] + strides[d]) / strides[d]) for d in range(len(kernel))]
    return Layer(
        name, "Conv", "gemm",
        M=batch * math.prod(spatial_out), K=cin_g * math.prod(kernel), N=kout // groups, groups=groups,
        ifmap_elems=batch * cin * math.prod(inp[2:]), filter_elems=math.prod(w), ofmap_elems=math.prod(out),
        spatial=len(spatial_out) >= 2, scalesim_M=batch * math.prod(ss_out), weight_name=node.input[1],
        kernel_elems=math.prod(kernel),
    )


def _matmul(node: onnx.NodeProto, name: str, a_shape: list[int], b_shape: list[int], out: list[int]) -> Layer:
    attrs = _attrs(node)
    if node.op_type == "Gemm":
        M = a_shape[1] if attrs.get("transA", 0) else a_shape[0]
        K = a_shape[0] if attrs.get("transA", 0) else a_shape[1]
        N = b_shape[0] if attrs.get("transB", 0) else b_shape[1]
        batch = 1
    else:
        a2 = a_shape if len(a_shape) > 1 else [1, *a_shape]
        b2 = b_shape if len(b_shape) > 1 else [*b_shape, 1]
        M, K, N = a2[-2], a2[-1], b2[-1]
        a_batch, b_batch = math.prod(a2[:-2]), math.prod(b2[:-2])
        if b_batch == 1:  # a weight shared over the batch: fold the batch into the rows
            M, batch = M * a_batch, 1
        else:
            batch = max(a_batch, b_batch)
    return Layer(
        name, node.op_type, "gemm", M=M, K=K, N=N, groups=batch,
        ifmap_elems=math.prod(a_shape), filter_elems=math.prod(b_shape), ofmap_elems=math.prod(out),
        scalesim_M=M, weight_name=node.input[1],
        weight_layout="nk" if node.op_type == "Gemm" and attrs.get("transB", 0) else "kn",
    )


def _attach_sparsity(layer: Layer, record, init: onnx.TensorProto | None) -> None:
    """Density and mask from the compiler's annotation, else from the stored weight's zeros."""
    mask = None
    if record is not None:
        layer.weight_pattern = record.pattern
        mask = record.decoded_mask()
        layer.weight_density = float(record.density)
        if mask is not None and mask.size != layer.filter_elems:  # recorded before a shape change
            mask = None
    if mask is None and init is not None:
        mask = numpy_helper.to_array(init) != 0
        if record is None:
            layer.weight_pattern = "unstructured"
    if mask is None:  # a weight computed at run time (attention): dense
        layer.weight_pattern = "dense"
        return
    layer.weight_density = float(mask.mean()) if mask.size else 1.0
    if layer.weight_density < 1.0:
        if layer.weight_layout == "nk":
            layer.weight_mask = mask.reshape(layer.groups * layer.N, layer.K)
        else:  # (..., K, N): one (N, K) block per batch entry
            layer.weight_mask = np.swapaxes(mask.reshape(-1, layer.K, layer.N), 1, 2).reshape(-1, layer.K)
    else:
        layer.weight_pattern = "dense"
