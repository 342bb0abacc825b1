"""ONNX files as older model zoos ship them: IR version 3, opset 7-9, every weight also listed as a
graph input, weights built by Constant/ConstantOfShape nodes.

Each compiles on both backends, takes only its real inputs, and matches ONNX Runtime run on the
original file under the project's tolerance rule. ONNX Runtime 1.32 runs IR 3 files at opset 9
(the IR that opset 9 formally needs is 4), so the files keep IR 3 throughout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.artifact import MODEL_FILE
from tridesign.compiler import onnx_io
from tridesign.compiler.backends import get_backend
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.verification import verify

OLD_IR = 3


def old_model(nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    """An IR-3 model: every initializer is repeated as a graph input, as IR 3 required."""
    as_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in weights.items()]
    listed = inputs + as_inputs
    graph = helper.make_graph(nodes, "old_zoo", listed, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="old-zoo")
    model.ir_version = OLD_IR
    return model


def conv_net(opset: int, fill_bias: bool = False) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm on a 1x3x16x16 image.

    With `fill_bias` the Gemm bias is ConstantOfShape of a Constant shape (opset 9+), as some old
    exporters wrote zero or filled biases.
    """
    rng = np.random.default_rng(0)
    weights = {
        "conv_w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "conv_b": rng.standard_normal(4).astype(np.float32) * 0.1,
        "bn_scale": (1 + 0.1 * rng.standard_normal(4)).astype(np.float32),
        "bn_bias": (0.1 * rng.standard_normal(4)).astype(np.float32),
        "bn_mean": (0.1 * rng.standard_normal(4)).astype(np.float32),
        "bn_var": (1 + 0.1 * rng.random(4)).astype(np.float32),
        "fc_w": rng.standard_normal((10, 4 * 8 * 8)).astype(np.float32) * 0.05,
    }
    nodes = [
        helper.make_node("Conv", ["data", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    if fill_bias:
        shape = numpy_helper.from_array(np.array([10], np.int64))
        fill = numpy_helper.from_array(np.array([0.25], np.float32))
        nodes[:0] = [
            helper.make_node("Constant", [], ["fc_b_shape"], value=shape),
            helper.make_node("ConstantOfShape", ["fc_b_shape"], ["fc_b"], value=fill),
        ]
    else:
        weights["fc_b"] = rng.standard_normal(10).astype(np.float32) * 0.1
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])
    return old_model(nodes, [data], [logits], weights, opset)


def reshape_net(opset: int) -> onnx.ModelProto:
    """Reshape whose target shape is an initializer listed as an input, then MatMul."""
    weights = {"shape": np.array([1, -1], np.int64), "w": np.linspace(-1, 1, 48 * 5, dtype=np.float32).reshape(48, 5)}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    return old_model(nodes, [x], [y], weights, opset)


OLD_FILES = {
    "conv-opset8": (lambda: conv_net(8), "data"),
    "conv-opset9-constantofshape-bias": (lambda: conv_net(9, fill_bias=True), "data"),
    "reshape-opset7": (lambda: reshape_net(7), "x"),
}


@pytest.mark.parametrize("backend", ["ort", "tvm"])
@pytest.mark.parametrize("case", list(OLD_FILES))
def test_old_file_compiles_and_matches_ort_on_the_original(tmp_path, case, backend):
    build, real_input = OLD_FILES[case]
    src = tmp_path / f"{case}.onnx"
    onnx.save(build(), str(src))
    out = tmp_path / "art"
    manifest = compile_artifact(str(src), CompileOptions(backend=backend), out)

    assert [t.name for t in manifest.inputs] == [real_input]
    compiled = onnx.load(str(out / MODEL_FILE))
    assert [v.name for v in compiled.graph.input] == [real_input]
    assert not any(node.op_type in ("Constant", "ConstantOfShape") for node in compiled.graph.node)

    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    shape = original.get_inputs()[0].shape
    feed = {real_input: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    reference = dict(zip([o.name for o in original.get_outputs()], original.run(None, feed)))
    session = get_backend(backend).load(out)
    assert session.input_names == [real_input]
    result = verify(session.run(feed), reference)
    assert result.passed, f"max abs error {result.max_abs_err:.3g} > {result.tolerance:.3g}"


def test_weights_leave_the_inputs_and_the_original_is_untouched():
    model = reshape_net(8)
    detached = onnx_io.detach_initializers(model)
    assert [v.name for v in detached.graph.input] == ["x"]
    assert detached.ir_version >= 8  # what opset 17 needs
    assert [v.name for v in model.graph.input] == ["x", "shape", "w"] and model.ir_version == OLD_IR


def test_normalize_turns_constantofshape_weights_into_initializers_and_keeps_metadata():
    model = conv_net(9, fill_bias=True)
    model.metadata_props.add(key="zoo", value="old")
    normalized = onnx_io.normalize(model)
    assert onnx_io.default_opset(normalized) == 17
    bias = {init.name: numpy_helper.to_array(init) for init in normalized.graph.initializer}["fc_b"]
    np.testing.assert_array_equal(bias, np.full(10, 0.25, np.float32))
    assert {p.key: p.value for p in normalized.metadata_props}["zoo"] == "old"


def broken_missing_tensor(path: Path) -> None:
    model = conv_net(8)
    model.graph.node[2].input[0] = "no_such_tensor"
    onnx.save(model, str(path))


def broken_gemm_weight(path: Path) -> None:
    """The Gemm weight and its graph input agree with each other but not with the flattened image:
    the checker passes, ONNX Runtime refuses the model."""
    model = conv_net(8)
    bad = np.zeros((10, 7), np.float32)
    next(i for i in model.graph.initializer if i.name == "fc_w").CopyFrom(numpy_helper.from_array(bad, "fc_w"))
    next(v for v in model.graph.input if v.name == "fc_w").type.tensor_type.shape.dim[1].dim_value = 7
    onnx.save(model, str(path))


def broken_batchnorm_spatial(path: Path) -> None:
    """BatchNormalization with spatial=0 (opset 7), which the version converter cannot upgrade."""
    model = conv_net(7)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    bn.attribute.append(helper.make_attribute("spatial", 0))
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    "make_broken, message",
    [
        (broken_missing_tensor, "no_such_tensor"),
        (broken_gemm_weight, "ONNX Runtime cannot load"),
        (broken_batchnorm_spatial, "cannot upgrade opset 7 to 17"),
    ],
)
def test_broken_old_file_gives_one_line_error(tmp_path, cli, make_broken, message):
    src = tmp_path / "broken.onnx"
    make_broken(src)
    proc = cli("compile", str(src), "-o", str(tmp_path / "art"), "--backend", "ort")
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tridesign: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "art").exists()
