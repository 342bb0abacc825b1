"""Pruning a user's ONNX file on its initializers: Conv, Gemm (both layouts) and MatMul weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.annotations import read_weight_sparsity
from tridesign.verification import run_onnxruntime
from tridesign.compiler.sparsity import prune_onnx
from tridesign.compiler.sparsity.prune_fns import is_nm
from tridesign.errors import UsageError
from tridesign.sparsity_plan import load_plan

RNG = np.random.default_rng(0)
W_CONV = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
W_MM = RNG.standard_normal((8 * 6 * 6, 16)).astype(np.float32)  # (in, out)
W_GEMM = RNG.standard_normal((10, 16)).astype(np.float32)  # (out, in), transB=1


def user_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "wm"], ["h"]),
        helper.make_node("Gemm", ["h", "wg"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(w, n) for w, n in ((W_CONV, "wc"), (W_MM, "wm"), (W_GEMM, "wg"))]
    graph = helper.make_graph(
        nodes, "user", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def numpy_forward(x: np.ndarray, wc: np.ndarray, wm: np.ndarray, wg: np.ndarray) -> np.ndarray:
    cols = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (2, 3, 6, 6, 3, 3)
    conv = np.einsum("bchwij,ocij->bohw", cols, wc)
    return np.maximum(conv, 0).reshape(2, -1) @ wm @ wg.T


@pytest.mark.parametrize("spec", ["unstructured:0.7", "nm:2:4", "block:0.5:4x4", "channel:0.5", "pattern:4:0.9"])
def test_prune_onnx_numbers_and_annotations(spec: str) -> None:
    model = user_model()
    report = prune_onnx(model, load_plan(spec))
    onnx.checker.check_model(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    records = read_weight_sparsity(model)
    assert set(records) == {"wc", "wm", "wg"}
    for name, ws in records.items():
        mask = ws.decoded_mask() if ws.mask else np.ones(ws.shape, dtype=bool)
        assert mask.shape == inits[name].shape
        assert not inits[name][~mask].any()
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = run_onnxruntime(model, {"x": x})["y"]
    np.testing.assert_allclose(got, numpy_forward(x, inits["wc"], inits["wm"], inits["wg"]), rtol=1e-4, atol=1e-4)
    if spec == "nm:2:4":
        assert is_nm(inits["wm"].T, 2, 4)  # groups run along the reduction axis, rows of (in, out)
        assert is_nm(inits["wg"], 2, 4)
    if spec == "unstructured:0.7":
        assert report.real_sparsity == pytest.approx(0.7, abs=1e-3)
    if spec == "channel:0.5":
        assert (np.abs(inits["wm"]).sum(axis=0) == 0).sum() == 8  # whole output columns of (in, out)


def test_zograsp_on_onnx_is_refused() -> None:
    with pytest.raises(UsageError, match="zograsp"):
        prune_onnx(user_model(), load_plan("zograsp:0.9"))


def test_yaml_rules_use_initializer_names(tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("default: none\nlayers:\n  wm: unstructured:0.9:layer\n")
    model = user_model()
    report = prune_onnx(model, load_plan(plan))
    assert set(report.records) == {"wm"}
    assert set(read_weight_sparsity(model)) == {"wm"}


def test_annotate_refuses_a_record_it_cannot_place(resnet, example) -> None:
    from tridesign.compiler.sparsity import annotate_exported, prune_torch
    from tridesign.errors import TridesignError

    report = prune_torch(resnet, load_plan("unstructured:0.5"), example)
    with pytest.raises(TridesignError, match="no matching initializer"):
        annotate_exported(user_model(), report)
