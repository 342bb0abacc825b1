"""A tiny ONNX classifier built with onnx.helper (no torch) and data it can learn from."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

IN, HIDDEN, CLASSES, ROWS = 16, 32, 4, 256


def make_mlp(seed: int = 0) -> onnx.ModelProto:
    """x[B,16] -> fc1 -> relu -> fc2 -> logits[B,4], weights named like a torch export."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((HIDDEN, IN)) / 4).astype(np.float32), "fc1.weight"),
        numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "fc1.bias"),
        numpy_helper.from_array((rng.standard_normal((CLASSES, HIDDEN)) / 6).astype(np.float32), "fc2.weight"),
        numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], transB=1, name="/fc1/Gemm"),
        helper.make_node("Relu", ["h"], ["a"], name="/relu/Relu"),
        helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], transB=1, name="/fc2/Gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", IN])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_data(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows labelled by a random linear teacher: learnable by the last layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, IN)).astype(np.float32)
    teacher = rng.standard_normal((IN, CLASSES))
    return x, (x @ teacher).argmax(1).astype(np.int64)


@pytest.fixture
def mlp() -> onnx.ModelProto:
    return make_mlp()


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data()
