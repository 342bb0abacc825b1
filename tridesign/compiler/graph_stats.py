"""Parameter and dense-MAC counts read off an ONNX graph (what the profile reports).

Counts come from the graph, not from torch, so they hold for any ONNX a user brings. MACs are the
dense multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (element-wise work is not a MAC).
"""

from __future__ import annotations

import numpy as np
import onnx


def count_params(model: onnx.ModelProto) -> int:
    """Elements in float initializers (the weights); integer shape constants are not parameters."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE):
            total += int(np.prod(init.dims)) if init.dims else 1
    return total


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes: dict[str, list[int]] = {}
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    for value in values:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_macs(model: onnx.ModelProto) -> int:
    """Dense MACs for one run of the graph at its declared input shapes (symbolic dims count as 1)."""
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            # every output element takes Cin/g * prod(kernel) MACs; weight is (Cout, Cin/g, k...)
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if w and y:
                total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            # every input element scatters into Cout/g * prod(kernel) outputs; weight is (Cin, Cout/g, k...)
            w, x = shapes.get(node.input[1]), shapes.get(node.input[0])
            if w and x:
                total += int(np.prod(x)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                trans_b = any(at.name == "transB" and at.i for at in node.attribute)
                k = a[-2] if trans_a else a[-1]
                n = b[-2] if trans_b else b[-1]
                rows = int(np.prod(a[:-1])) if not trans_a else a[-1]
                batch = int(np.prod(b[:-2])) if len(b) > 2 and len(a) < len(b) else 1
                total += rows * k * n * batch
    return int(total)
