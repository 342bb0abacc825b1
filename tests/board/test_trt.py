"""TensorRT on the board: the trtexec line for the bundle README (everywhere), and engine build and
run against numpy where TensorRT and a CUDA GPU exist (markers `tensorrt` and `gpu`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.board import trt as board_trt
from tridesign.board.trt import TrtError, TrtSession, build_engine, trtexec_command

UNAVAILABLE = board_trt.available()


def needs_tensorrt(test):
    """Marked `tensorrt` and `gpu`; skipped, with available()'s reason, where either is missing."""
    skip = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"TensorRT not usable here: {UNAVAILABLE}")
    return pytest.mark.tensorrt(pytest.mark.gpu(skip(test)))


BUILD = {"fp16": False, "int8": False, "sparse_weights": False, "timing_cache": None, "opt_level": 3, "workspace_mib": 1024}
RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


def test_trtexec_command_fp16():
    assert trtexec_command("model.onnx", "model.engine", **{**BUILD, "fp16": True}) == (
        "trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 "
        "--builderOptimizationLevel=3 --memPoolSize=workspace:1024"
    )


def test_trtexec_command_int8_qdq_on_tensorrt_10_and_11():
    """TensorRT 10 needs --int8 for the Q/DQ nodes to run in INT8; trtexec 11 has no precision flags."""
    options = {**BUILD, "fp16": True, "int8": True, "timing_cache": "timing.cache", "workspace_mib": 512}
    assert trtexec_command("model_int8.onnx", "model_int8.engine", **options) == (
        "trtexec --onnx=model_int8.onnx --saveEngine=model_int8.engine --fp16 --int8 "
        "--timingCacheFile=timing.cache --builderOptimizationLevel=3 --memPoolSize=workspace:512"
    )
    assert trtexec_command("model_int8.onnx", "model_int8.engine", **options, trt_major=11) == (
        "trtexec --onnx=model_int8.onnx --saveEngine=model_int8.engine "
        "--timingCacheFile=timing.cache --builderOptimizationLevel=3 --memPoolSize=workspace:512"
    )


def test_trtexec_command_sparse_with_shapes_and_quoting():
    options = {**BUILD, "fp16": True, "sparse_weights": True, "opt_level": 5}
    assert trtexec_command("my model.onnx", "model.engine", **options, shapes={"image": [1, 3, 32, 32]}) == (
        "trtexec '--onnx=my model.onnx' --saveEngine=model.engine --fp16 --sparsity=enable "
        "--builderOptimizationLevel=5 --memPoolSize=workspace:1024 --shapes=image:1x3x32x32"
    )


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_without_tensorrt_the_reason_is_given(tmp_path):
    assert UNAVAILABLE and "TensorRT" in UNAVAILABLE
    with pytest.raises(TrtError, match="TensorRT's Python package is not installed"):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.engine")
    with pytest.raises(TrtError, match="not installed"):
        TrtSession(tmp_path / "model.engine")


def _affine(path: Path, batch: int | str = 2) -> Path:
    """y = x @ W + B, x of shape [batch, 4]."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _affine_qdq(path: Path) -> Path:
    """The affine model with int8 Q/DQ on the activation and the weights (explicit quantization)."""
    scale_x, scale_w = np.float32(0.05), np.float32(np.abs(W).max() / 127)
    zero = np.int8(0)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B"),
             numpy_helper.from_array(np.array(scale_x), "sx"), numpy_helper.from_array(np.array(scale_w), "sw"),
             numpy_helper.from_array(np.array(zero), "z")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "z"], ["xd"]),
        helper.make_node("QuantizeLinear", ["W", "sw", "z"], ["wq"]),
        helper.make_node("DequantizeLinear", ["wq", "sw", "z"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "affine_qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@needs_tensorrt
@pytest.mark.parametrize("fp16, rtol", [(False, 1e-5), (True, 1e-2)], ids=["fp32", "fp16"])
def test_build_and_run_matches_numpy(tmp_path, fp16, rtol):
    cache = tmp_path / "timing.cache"
    info = build_engine(_affine(tmp_path / "affine.onnx"), tmp_path / "affine.engine", fp16=fp16, timing_cache=cache)
    assert info["engine_bytes"] == (tmp_path / "affine.engine").stat().st_size > 0
    assert cache.stat().st_size > 0 and info["shapes"] == {} and info["network_layers"] >= 2
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    with TrtSession(tmp_path / "affine.engine") as session:
        assert (session.input_names, session.output_names) == (["x"], ["y"])
        y = session.run({"x": x})["y"]
    np.testing.assert_allclose(y, x @ W + B, rtol=rtol, atol=rtol)
    again = build_engine(tmp_path / "affine.onnx", tmp_path / "affine.engine", fp16=fp16, timing_cache=cache)
    assert not any("timing cache" in note for note in again["notes"]), "the saved cache is reused"


@needs_tensorrt
def test_dynamic_batch_is_pinned_by_shapes(tmp_path):
    info = build_engine(_affine(tmp_path / "affine.onnx", batch="N"), tmp_path / "affine.engine", fp16=False,
                        shapes={"x": [3, 4]})
    assert info["shapes"] == {"x": [3, 4]}
    x = RNG.standard_normal((3, 4)).astype(np.float64)  # cast to the engine's float32 on the way in
    with TrtSession(tmp_path / "affine.engine") as session:
        np.testing.assert_allclose(session.run({"x": x})["y"], x @ W + B, rtol=1e-5, atol=1e-5)
        with pytest.raises(TrtError, match="optimization profile"):
            session.run({"x": x[:2]})
        with pytest.raises(TrtError, match="missing inputs"):
            session.run({})


@needs_tensorrt
def test_int8_from_qdq_nodes(tmp_path):
    """INT8 comes from the ONNX's Q/DQ nodes (no calibrator): the result is the fake-quantized one."""
    info = build_engine(_affine_qdq(tmp_path / "affine_int8.onnx"), tmp_path / "affine_int8.engine", int8=True)
    assert "int8" in info["precision"] or info["typing"] == "strong"
    x = RNG.uniform(-3, 3, (2, 4)).astype(np.float32)
    w_scale = np.abs(W).max() / 127
    reference = np.clip(np.round(x / 0.05), -128, 127) * 0.05 @ (np.round(W / w_scale) * w_scale) + B
    with TrtSession(tmp_path / "affine_int8.engine") as session:
        np.testing.assert_allclose(session.run({"x": x})["y"], reference, rtol=2e-2, atol=2e-2)


@needs_tensorrt
def test_parser_errors_become_one_trt_error(tmp_path):
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery")], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "bad.onnx")
    with pytest.raises(TrtError, match="ONNX parser rejected bad.onnx: .*NoSuchOp"):
        build_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine")
    assert not (tmp_path / "bad.engine").exists()
