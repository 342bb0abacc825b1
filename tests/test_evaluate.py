"""Accuracy after compression (compiler.evaluate): metrics against plain numpy, the manifest's
`accuracy` record from `compile --eval-data`, the refused drop that leaves nothing, `tridesign
evaluate`, and one-line refusals for data that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.artifact import MODEL_FILE, load_manifest, parse_manifest
from tridesign.compiler.evaluate import EvalData, EvalRequest, check_targets, evaluate_artifact, load_eval_data, metric_value, score
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.errors import TridesignError, UsageError
from tridesign.sparsity_plan import load_plan

GOLDEN = Path(__file__).parent / "golden" / "manifest_pre_typed_ort_nm24_int8.json"
FEATURES, CLASSES = 16, 6


def classifier(path: Path, batch: int | str = "N", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Gemm classifier x (batch, 16) -> logits (batch, 6) saved at `path`; returns its (W, b)."""
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), rng.standard_normal(CLASSES).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], name="fc")], "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w, b


def initializer(artifact: Path, name: str) -> np.ndarray:
    model = onnx.load(str(artifact / MODEL_FILE))
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The classifier and 200 rows whose labels are its own dense predictions (dense top-1 = 1)."""
    root = tmp_path_factory.mktemp("eval")
    w, b = classifier(root / "clf.onnx")
    x = np.random.default_rng(1).standard_normal((200, FEATURES)).astype(np.float32)
    y = (x @ w + b).argmax(1)
    np.savez(root / "data.npz", x=x, y=y)
    return root / "clf.onnx", root / "data.npz", x, y


def test_metrics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((50, 8)), rng.integers(0, 8, 50)
    assert metric_value(scores, labels, "top1") == pytest.approx(np.mean([np.argmax(s) == t for s, t in zip(scores, labels)]))
    top5 = np.mean([t in np.argsort(-s)[:5] for s, t in zip(scores, labels)])
    assert metric_value(scores, labels, "top5") == pytest.approx(top5) and top5 > metric_value(scores, labels, "top1")
    targets = rng.standard_normal((50, 8))
    assert metric_value(scores, targets, "mse") == pytest.approx(((scores - targets) ** 2).sum() / scores.size)

    def iou(p, q) -> float:
        iw, ih = max(0.0, min(p[2], q[2]) - max(p[0], q[0])), max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - iw * ih
        return iw * ih / union

    corner = rng.uniform(0, 10, (30, 2))
    a = np.hstack([corner, corner + rng.uniform(1, 5, (30, 2))])
    b = a + rng.uniform(-2, 2, (30, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    assert metric_value(a, b, "iou") == pytest.approx(np.mean([iou(p, q) for p, q in zip(a, b)]))
    assert metric_value(a, a, "iou") == pytest.approx(1.0)


def test_a_fixed_batch_pads_the_last_batch_and_drops_the_padding(tmp_path) -> None:
    w, b = classifier(tmp_path / "fixed.onnx", batch=4)
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    calls: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(feed["x"]))
        return {"logits": session.run(None, feed)[0]}

    x = np.random.default_rng(2).standard_normal((10, FEATURES)).astype(np.float32)
    y = np.random.default_rng(3).integers(0, CLASSES, 10)
    spec = {"name": "x", "shape": [4, FEATURES], "dtype": "float32"}
    result = score(run, [spec], EvalData({"x": x}, y, "rows"), "top1")
    assert calls == [4, 4, 4] and result.samples == 10
    assert result.value == pytest.approx(float(((x @ w + b).argmax(1) == y).mean()))


def test_compile_eval_data_records_both_numbers_of_a_user_onnx(labelled, tmp_path) -> None:
    src, data, x, y = labelled
    options = CompileOptions(prune=load_plan("unstructured:0.7"))
    manifest = compile_artifact(str(src), options, tmp_path / "a", EvalRequest(str(data)))
    pruned_w = initializer(tmp_path / "a", "w")
    assert (pruned_w == 0).mean() == pytest.approx(0.7, abs=0.02)
    expected = float(((x @ pruned_w + initializer(tmp_path / "a", "b")).argmax(1) == y).mean())
    record = load_manifest(tmp_path / "a").accuracy
    assert record == manifest.accuracy
    assert record["artifact"] == pytest.approx(expected) and record["reference"] == 1.0
    assert record["drop"] == pytest.approx(1.0 - expected) and record["drop"] > 0
    assert record["samples"] == 200 and record["metric"] == "top1" and record["data"] == str(data)
    # the same artifact through `tridesign evaluate`: the reference rebuilt from the .onnx it came from
    again = evaluate_artifact(tmp_path / "a", str(data), None, "top1")
    assert (again["artifact"], again["reference"], again["notes"]) == (record["artifact"], 1.0, [])


def test_a_tvm_build_with_a_fixed_batch_scores_every_row(labelled, tmp_path) -> None:
    src, _, x, y = labelled
    np.savez(tmp_path / "odd.npz", x=x[:195], y=y[:195])  # 24 batches of 8 and 3 rows, padded to 8
    options = CompileOptions(backend="tvm", batch=8, prune=load_plan("unstructured:0.5"))
    manifest = compile_artifact(str(src), options, tmp_path / "tvm", EvalRequest(str(tmp_path / "odd.npz")))
    assert manifest.inputs[0].shape == [8, FEATURES] and manifest.accuracy["samples"] == 195
    pruned = x[:195] @ initializer(tmp_path / "tvm", "w") + initializer(tmp_path / "tvm", "b")
    assert manifest.accuracy["artifact"] == pytest.approx(float((pruned.argmax(1) == y[:195]).mean()))


def test_mse_against_target_arrays_from_a_labels_file(labelled, tmp_path) -> None:
    src, _, x, _ = labelled
    targets = np.random.default_rng(4).standard_normal((200, CLASSES)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "t.npz", targets=targets)
    request = EvalRequest(str(tmp_path / "x.npz"), f"{tmp_path / 't.npz'}:targets", "mse")
    record = compile_artifact(str(src), CompileOptions(quantize="int8"), tmp_path / "q", request).accuracy
    int8 = ort.InferenceSession(str(tmp_path / "q" / MODEL_FILE), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    dense = onnx.load(str(src))
    dw, db = (numpy_helper.to_array(t) for t in dense.graph.initializer)
    assert record["reference"] == pytest.approx(float(np.mean((x @ dw + db - targets) ** 2)), rel=1e-5)
    assert record["artifact"] == pytest.approx(float(np.mean((int8 - targets) ** 2)), rel=1e-5)
    assert record["drop"] == pytest.approx(record["artifact"] - record["reference"])


def test_a_drop_above_the_bound_fails_the_compile_and_writes_nothing(labelled, tmp_path) -> None:
    src, data, _, _ = labelled
    with pytest.raises(TridesignError, match=r"accuracy drop 0\.\d+ \(top1: .* vs uncompressed 1\) > --max-accuracy-drop 0\.01; nothing was written"):
        compile_artifact(str(src), CompileOptions(prune=load_plan("unstructured:0.7")), tmp_path / "no",
                         EvalRequest(str(data), max_drop=0.01))
    assert list(tmp_path.iterdir()) == []
    kept = compile_artifact(str(src), CompileOptions(prune=load_plan("unstructured:0.7")), tmp_path / "yes",
                            EvalRequest(str(data), max_drop=1.0))
    assert kept.accuracy["max_drop"] == 1.0 and (tmp_path / "yes" / MODEL_FILE).is_file()


def test_digits_default_to_their_held_out_split(tmp_path, cli) -> None:
    from tridesign.compiler.export import export_model
    from tridesign.data.digits import load_digits_split

    art = tmp_path / "int8"
    compile_artifact("resnet20_digits", CompileOptions(quantize="int8"), art, EvalRequest())
    record = load_manifest(art).accuracy
    split = load_digits_split()
    export_model("resnet20_digits", "tiny", tmp_path / "dense.onnx")
    dense = ort.InferenceSession(str(tmp_path / "dense.onnx"), providers=["CPUExecutionProvider"])
    assert record["reference"] == pytest.approx(float((dense.run(None, {"input": split.x_test})[0].argmax(1) == split.y_test).mean()))
    assert record["reference"] >= 0.95 and record["drop"] <= 0.02 and record["data"] == "digits held-out split"
    done = cli("evaluate", str(art), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["artifact"], report["reference"], report["samples"]) == (record["artifact"], record["reference"], 450)


def test_old_manifests_load_and_new_ones_carry_accuracy_only_when_measured(ort_artifact) -> None:
    golden = parse_manifest(json.loads(GOLDEN.read_text()))
    assert golden.accuracy is None and "accuracy" not in golden.to_dict()
    assert "accuracy" not in json.loads((ort_artifact / "manifest.json").read_text())


def test_evaluate_notes_a_reference_it_cannot_rebuild(labelled, tmp_path) -> None:
    src, data, _, _ = labelled
    moved = tmp_path / "clf.onnx"
    moved.write_bytes(src.read_bytes())
    compile_artifact(str(moved), CompileOptions(), tmp_path / "a")
    moved.unlink()
    report = evaluate_artifact(tmp_path / "a", str(data), None, "top1")
    assert report["artifact"] == 1.0 and report["reference"] is None and report["drop"] is None
    assert report["notes"] == [f"no reference: the source {moved} is gone"]


SPECS = [{"name": "x", "shape": ["N", FEATURES], "dtype": "float32"}]


@pytest.mark.parametrize("arrays, labels, message", [
    ({"x": np.zeros((5, FEATURES), np.float32), "y": np.zeros(4, int)}, None, "input 'x' has 5 rows, the labels 4"),
    ({"x": np.zeros((5, 3), np.float32), "y": np.zeros(5, int)}, None, r"rows of 'x' have shape \[3\], the model takes \[16\]"),
    ({"x": np.zeros((5, FEATURES), np.int64), "y": np.zeros(5, int)}, None, "input 'x' is int64, the model takes float32"),
    ({"image": np.zeros((5, FEATURES), np.float32), "y": np.zeros(5, int)}, None, r"needs an array per input \(x\) or x; it holds image"),
    ({"x": np.zeros((5, FEATURES), np.float32)}, None, "no labels: add an array y, or pass --labels FILE.npy"),
    ({"x": np.zeros((5, FEATURES), np.float32)}, "lab.npz", r"name the array as FILE.npz:KEY \(it holds a, b\)"),
])
def test_data_that_does_not_fit_is_one_line(tmp_path, arrays, labels, message) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    np.savez(tmp_path / "lab.npz", a=np.zeros(5), b=np.zeros(5))
    with pytest.raises(UsageError, match=message):
        load_eval_data(tmp_path / "d.npz", labels and str(tmp_path / labels), SPECS)


@pytest.mark.parametrize("targets, metric, shape, message", [
    (np.array([0, 6, 2]), "top1", ["N", 6], r"labels run 0\.\.6, the model has 6 classes \(0\.\.5\)"),
    (np.array([0.5, 1.0]), "top1", ["N", 6], "top1 takes one integer class per sample; the labels are float64"),
    (np.array([0, 1]), "top5", ["N", 3], "top5 needs at least 5 classes; the model has 3"),
    (np.zeros((2, 5)), "mse", ["N", 6], r"mse targets have rows of shape \[5\], the model's first output \[6\]"),
    (np.zeros((2, 4)), "iou", ["N", 6], r"iou scores \(N, 4\) boxes"),
])
def test_targets_that_do_not_fit_the_metric_are_one_line(targets, metric, shape, message) -> None:
    with pytest.raises(UsageError, match=message):
        check_targets(targets, metric, shape, "--data d.npz")


def test_cli_refusals_are_one_line(cli, tmp_path, labelled, ort_artifact) -> None:
    src, data, _, _ = labelled
    cases = [
        (["compile", str(src), "-o", str(tmp_path / "a"), "--eval-data", str(data)], "--eval-data measures what --prune/--quantize cost"),
        (["compile", str(src), "-o", str(tmp_path / "a"), "--max-accuracy-drop", "0.1"], "go with --eval-data"),
        (["compile", str(src), "-o", str(tmp_path / "a"), "--quantize", "int8", "--eval-data", str(tmp_path)], "a directory of images is not read"),
        (["compile", str(src), "-o", str(tmp_path / "a"), "--quantize", "int8", "--eval-data", str(data), "--max-accuracy-drop", "-1"], "must be >= 0"),
        (["evaluate", str(ort_artifact), "--data", str(tmp_path / "none.npz")], "--data " + str(tmp_path / "none.npz") + ": no such file"),
        (["evaluate", str(ort_artifact), "--metric", "top3"], "unknown --metric 'top3'"),
        (["evaluate", str(ort_artifact), "--data", str(data)], "rows of 'input' have shape [16], the model takes [3, 32, 32]"),
    ]
    for args, message in cases:
        done = cli(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("tridesign: error:"), done.stderr
    assert not (tmp_path / "a").exists()
