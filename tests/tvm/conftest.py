"""TVM fixtures: one untuned host build of ResNet-20 (tiny), compiled once per session.

Every build points its tuning database at a fresh temporary directory, so a user's cache
(~/.cache/tridesign/tuning) can neither speed up nor change what the tests see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.compiler.backends.tvm import TvmBackend
from tridesign.compiler.options import CompileOptions


def odd_names_model():
    """Two outputs (a tuple in Relax), every name with '/' and ':', and a symbolic batch axis."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), "enc/w:0")
    nodes = [
        helper.make_node("MatMul", ["in/x:0", "enc/w:0"], ["mm/out:0"], name="enc/matmul:0"),
        helper.make_node("Relu", ["mm/out:0"], ["out/relu:0"], name="act/relu:0"),
        helper.make_node("Sigmoid", ["mm/out:0"], ["out/sig:1"], name="act/sig:1"),
    ]
    graph = helper.make_graph(
        nodes,
        "odd",
        [helper.make_tensor_value_info("in/x:0", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("out/relu:0", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("out/sig:1", TensorProto.FLOAT, ["N", 3]),
        ],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_model():
    """One 3x3 convolution + ReLU on 1x8x16x16: a kernel MetaSchedule can tune in a few trials."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.1, "conv/w")
    nodes = [
        helper.make_node("Conv", ["x", "conv/w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_head_model() -> onnx.ModelProto:
    """Conv+ReLU and a max-pool (hand-written kernels), a 95 %-block-sparse Gemm (a sparse kernel),
    then a MatMul head (MetaSchedule's: the heaviest kernel left, so the first a small budget tunes)."""
    from tridesign.annotations import WeightSparsity, encode_mask, write_weight_sparsity

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32), "conv/w")
    keep = np.repeat(np.repeat(rng.random((16, 128)) >= 0.95, 4, 0), 4, 1)
    sparse = (rng.standard_normal((64, 512)) * 0.05 * keep).astype(np.float32)
    head = numpy_helper.from_array((rng.standard_normal((64, 4)) * 0.1).astype(np.float32), "head/w")
    nodes = [
        helper.make_node("Conv", ["x", "conv/w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc/w"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "head/w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w, numpy_helper.from_array(sparse, "fc/w"), head],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    record = WeightSparsity(method="test", pattern="block:4x4", density=float(keep.mean()), shape=sparse.shape, mask=encode_mask(keep))
    write_weight_sparsity(model, {"fc/w": record})
    return model


@pytest.fixture
def odd_model():
    return odd_names_model()


@pytest.fixture
def small_conv_model():
    return conv_model()


@pytest.fixture
def conv_head():
    return conv_head_model()


@pytest.fixture(scope="session")
def tvm_backend() -> TvmBackend:
    backend = TvmBackend()
    reason = backend.available()
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tuning-db")


@pytest.fixture(scope="session")
def tvm_resnet20(tvm_backend, resnet20_onnx, empty_db, tmp_path_factory):
    """(artifact dir, CompileResult) of resnet20 tiny built untuned for the host."""
    out = tmp_path_factory.mktemp("tvm-art")
    result = tvm_backend.compile(resnet20_onnx, out, CompileOptions(backend="tvm", tuning_db=empty_db))
    return out, result
