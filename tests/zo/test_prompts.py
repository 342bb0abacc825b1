"""Prompt mode: only the framepad prompt is tuned, the frozen model is untouched, loss drops."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, evaluate, finetune
from tridesign.deploy.zo.prompts import PROMPT_NAMES, add_frame_prompt
from tridesign.errors import UsageError


def _conv_classifier() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(rng.standard_normal((3, 6)).astype(np.float32), "fc.weight")]
    nodes = [helper.make_node("Conv", ["input", "conv.weight"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fc.weight"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["b", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["b", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_frame_prompt_is_the_only_thing_tuned_and_it_helps():
    model = _conv_classifier()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3, 8, 8)).astype(np.float32)
    x[:, :, :2, :] += 2.0  # a bright top band the zero prompt erases
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = plain.run(None, {"input": x})[0].argmax(1)  # labels: the frozen model on the full images
    prompted = add_frame_prompt(model, pad=2)
    engine = OrtEngine(prompted, "prompt.*")
    assert [p.name for p in engine.params] == list(PROMPT_NAMES)
    assert engine.dim == 2 * 3 * 2 * 8 + 2 * 3 * 4 * 2
    before = evaluate(engine, {"input": x}, y)
    config = FinetuneConfig(selector="prompt.*", queries=10, steps=60, lr=0.05, optimizer="adam", mu=1e-2, batch=64)
    finetune(engine, {"input": x}, y, config)
    after = evaluate(engine, {"input": x}, y)
    assert after["loss"] < 0.85 * before["loss"]
    tuned = {i.name: numpy_helper.to_array(i) for i in engine.finetuned_model().graph.initializer}
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name, value in original.items():
        np.testing.assert_array_equal(tuned[name], value)
    assert np.abs(tuned["prompt.top"]).mean() > 0.1


def test_frame_prompt_rejects_bad_pads():
    with pytest.raises(UsageError, match="pad"):
        add_frame_prompt(_conv_classifier(), pad=4)
