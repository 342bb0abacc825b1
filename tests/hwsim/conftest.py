"""Small ONNX graphs built node by node (fast, exact shapes) and a shared ResNet-18 workload."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.hwsim.spec import SystemSpec, spec_from_dict


def weight(name: str, shape: tuple[int, ...], density: float = 1.0, seed: int = 0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    if density < 1.0:
        w[rng.random(shape) >= density] = 0.0
    return numpy_helper.from_array(w, name)


def graph_model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def conv_model(cin=8, cout=16, hw=(10, 12), k=3, stride=1, pad=1, dilation=1, group=1, density=1.0) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, *hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[stride, stride], pads=[pad] * 4,
                            dilations=[dilation, dilation], group=group)
    return graph_model([node], [x], [y], [weight("w", (cout, cin // group, k, k), density)])


def tiny_cnn(density: float = 1.0) -> onnx.ModelProto:
    """conv -> relu -> maxpool -> conv -> global pool -> flatten -> gemm (transB)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1),
    ]
    inits = [weight("w1", (16, 3, 3, 3), density, 1), weight("w2", (32, 16, 3, 3), density, 2),
             weight("w3", (10, 32), density, 3)]
    return graph_model(nodes, [x], [y], inits)


def small_system(**device) -> SystemSpec:
    base = dict(array_rows=8, array_cols=8, clock_mhz=100, ifmap_sram_kib=64, filter_sram_kib=64,
                ofmap_sram_kib=32, dram_gbps=4, vector_lanes=8)
    base.update(device)
    return spec_from_dict({"version": 1, "name": "small", "devices": {"d": base}})


@pytest.fixture(scope="session")
def resnet18():
    from tridesign.compiler.reference_nets import build_workload

    return build_workload(18, 224, 224)
