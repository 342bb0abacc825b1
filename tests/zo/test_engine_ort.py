"""The ORT engine: trainable initializers as inputs, one bound session, feature reuse, batching."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tridesign.deploy.zo import params as P
from tridesign.deploy.zo.engine_ort import OrtEngine, cross_entropy
from tridesign.errors import UsageError


def _reference_logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_selected_initializers_become_inputs_and_the_rest_stay(mlp):
    params = P.select(mlp, "fc2.*")
    assert [p.name for p in params] == ["fc2.weight", "fc2.bias"]
    rewritten = P.as_inputs(mlp, params)
    assert [i.name for i in rewritten.graph.input] == ["input", "fc2.weight", "fc2.bias"]
    assert {i.name for i in rewritten.graph.initializer} == {"fc1.weight", "fc1.bias"}
    with pytest.raises(UsageError, match="matches no float parameter"):
        P.select(mlp, "conv*")


def test_readable_names_come_from_torchscript_scopes():
    assert P._module_path("/layer3/layer3.2/conv1/Conv") == "layer3.2.conv1"
    assert P._module_path("/fc/Gemm") == "fc"


def test_engine_matches_plain_onnxruntime_and_sees_in_place_updates(mlp, data):
    x, y = data
    engine = OrtEngine(mlp, "fc2.*")
    assert engine.split.prefix is not None and engine.split.cut == ["a"]
    engine.set_batch({"input": x}, y)
    expected = float(cross_entropy(_reference_logits(mlp, x), y))
    assert engine.loss(engine.theta) == pytest.approx(expected, rel=1e-6)
    engine.theta[:] *= 2.0  # the bound OrtValues share θ's memory: no rebinding needed
    doubled = P.with_values(mlp, engine.params, engine.theta)
    assert engine.loss(engine.theta) == pytest.approx(float(cross_entropy(_reference_logits(doubled, x), y)), rel=1e-6)
    assert engine.loss(engine.theta) != pytest.approx(expected, rel=1e-3)


def test_feature_reuse_and_batched_path_agree_with_full_runs(mlp, data):
    x, y = data
    reuse, full = OrtEngine(mlp, "fc2.*"), OrtEngine(mlp, "fc2.*", reuse_features=False)
    assert full.split.prefix is None
    for e in (reuse, full):
        e.set_batch({"input": x[:64]}, y[:64])
    rng = np.random.default_rng(0)
    thetas = reuse.theta[None] + 0.1 * rng.standard_normal((5, reuse.dim)).astype(np.float32)
    looped = np.array([full.loss(t) for t in thetas])
    np.testing.assert_allclose(reuse.loss_batched(thetas), looped, rtol=1e-5)
    np.testing.assert_allclose([reuse.loss(t) for t in thetas], looped, rtol=1e-6)


def test_whole_model_selection_has_no_prefix(mlp, data):
    x, y = data
    engine = OrtEngine(mlp, "fc1.*,fc2.*")
    assert engine.split.prefix is None and engine.split.passthrough == ["input"]
    engine.set_batch({"input": x}, y)
    assert engine.loss(engine.theta) == pytest.approx(float(cross_entropy(_reference_logits(mlp, x), y)), rel=1e-6)


def test_finetuned_model_writes_theta_back_without_touching_the_original(mlp):
    engine = OrtEngine(mlp, "fc2.bias")
    engine.theta[:] = 1.5
    out = engine.finetuned_model()
    values = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}
    np.testing.assert_array_equal(values["fc2.bias"], np.full(4, 1.5, np.float32))
    original = {i.name: onnx.numpy_helper.to_array(i) for i in mlp.graph.initializer}
    np.testing.assert_array_equal(original["fc2.bias"], np.zeros(4, np.float32))


def test_batches_of_different_sizes_follow_each_other(mlp, data):
    x, _ = data
    engine = OrtEngine(mlp, "fc2.*")
    np.testing.assert_allclose(engine.predict({"input": x[:100]}, chunk=64), _reference_logits(mlp, x[:100]), rtol=1e-5, atol=1e-6)


def test_a_trainable_conv_bias_moves_the_convolution_into_the_prefix():
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "conv.bias")]
    nodes = [helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(nodes, "c", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["b", 2, 5, 5])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["b", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    engine = OrtEngine(model, "conv.bias")
    assert "Conv" in [n.op_type for n in engine.split.prefix.graph.node]
    assert "Conv" not in [n.op_type for n in engine.split.suffix.graph.node]
    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.predict({"input": x}), _reference_logits(model, x), rtol=1e-5, atol=1e-6)


def test_process_pool_spreads_perturbed_copies_over_workers(mlp, data):
    from tridesign.deploy.zo.process_pool import ProcessPoolLoss

    x, y = data
    engine = OrtEngine(mlp, "fc2.*")
    engine.set_batch({"input": x[:32]}, y[:32])
    thetas = engine.theta[None] + 0.1 * np.random.default_rng(1).standard_normal((5, engine.dim)).astype(np.float32)
    pool = ProcessPoolLoss(mlp, "fc2.*", {"input": x[:32]}, y[:32], workers=2)
    try:
        np.testing.assert_allclose(pool(thetas), engine.loss_batched(thetas), rtol=1e-5)
    finally:
        pool.close()
