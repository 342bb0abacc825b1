"""The hand-written max-pool: against torch, and in a compiled model against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tvm
from onnx import TensorProto, helper

from tridesign.compiler.backends.tvm import TvmBackend, kernel_op_type
from tridesign.compiler.options import CompileOptions
from tridesign.targets import tvm_target
from tridesign.kernels.tir_max_pool import PoolGeometry, max_pool2d_func

# (x shape, kernel, stride, padding): ResNet's stem pool, an odd map whose last window hangs over
# the padding, non-overlapping windows, stride 1 ("same" size), a 1×1 subsampling pool, a
# rectangular kernel, a batch of two.
CASES = [
    ((1, 64, 112, 112), (3, 3), (2, 2), (1, 1)),
    ((1, 5, 9, 11), (3, 3), (2, 2), (1, 1)),
    ((1, 3, 8, 8), (2, 2), (2, 2), (0, 0)),
    ((1, 4, 7, 7), (3, 3), (1, 1), (1, 1)),
    ((1, 8, 10, 10), (1, 1), (2, 2), (0, 0)),
    ((2, 6, 12, 9), (2, 3), (1, 2), (1, 1)),
]


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES)
def test_matches_torch_exactly(shape, kernel, stride, padding):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding).numpy()
    geom = PoolGeometry(kernel, stride, padding)
    kf = max_pool2d_func(shape, geom.out_shape(shape, padding), geom)
    assert kf.out_shape == want.shape
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=tvm_target("host"))
    dev = tvm.cpu()
    y = tvm.runtime.tensor(np.full(want.shape, np.nan, np.float32), dev)
    lib[kf.name](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(np.full(1, -np.inf, np.float32), dev), y)
    np.testing.assert_array_equal(y.numpy(), want)  # a max is exact


def test_floor_bounds_the_outputs_from_below():
    shape, geom = (1, 2, 6, 6), PoolGeometry((2, 2), (2, 2), (0, 0))
    x = -np.abs(np.random.default_rng(1).standard_normal(shape)).astype(np.float32) - 0.5
    kf = max_pool2d_func(shape, geom.out_shape(shape, (0, 0)), geom)
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=tvm_target("host"))
    y = tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32))
    lib[kf.name](tvm.runtime.tensor(x), tvm.runtime.tensor(np.full(1, -0.25, np.float32)), y)
    np.testing.assert_array_equal(y.numpy(), np.full(kf.out_shape, -0.25, np.float32))


def test_padding_as_large_as_the_kernel_is_refused():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        max_pool2d_func((1, 1, 8, 8), (1, 1, 5, 5), PoolGeometry((2, 2), (2, 2), (2, 2)))


def pool_model(ceil_mode: int) -> onnx.ModelProto:
    """conv → MaxPool 3×3/2 → MaxPool 2×2/1 (ceil_mode as given on the second)."""
    rng = np.random.default_rng(2)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], rng.standard_normal(216).astype(np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=ceil_mode),
    ]
    graph = helper.make_graph(
        nodes, "pools",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 21, 21])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5 + ceil_mode, 5 + ceil_mode])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_compiled_model_matches_onnx_runtime(tmp_path, ceil_mode):
    path = tmp_path / "pools.onnx"
    onnx.save(pool_model(ceil_mode), path)
    out = tmp_path / "art"
    out.mkdir()
    backend = TvmBackend()
    result = backend.compile(path, out, CompileOptions(backend="tvm", tuning_db=tmp_path / "db"))
    # ceil mode is not the kernel's: that pool stays on TVM's reduction, and a note says so
    assert result.tuning["max_pools"] == 2 - ceil_mode
    assert any("not covered by the hand-written kernel" in n for n in result.notes) == bool(ceil_mode)
    x = np.random.default_rng(3).standard_normal((1, 3, 21, 21)).astype(np.float32)
    got = backend.load(out).run({"x": x})["y"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)  # the conv's summation order differs
    pools = [layer for layer in backend.profile_layers(out, {"x": x}, 2) if layer.op_type == "max_pool2d"]
    assert len(pools) == 2 - ceil_mode


def test_op_type_of_the_kernel_symbol():
    assert kernel_op_type("max_pool2d_1x64x112x112_k3x3_s2x2_p1x1") == "max_pool2d"
