"""The compile pipeline: manifest contents, verification, atomic artifacts, profile and run."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tridesign.atomic import atomic_dir
from tridesign.verification import run_onnxruntime
from tridesign.compiler.options import CompileOptions
from tridesign.artifact import load_manifest
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.profile import profile_artifact
from tridesign.compiler.run import run_artifact
from tridesign.errors import TridesignError, UsageError


def test_manifest_records_source_versions_io_and_verification(ort_artifact):
    manifest = load_manifest(ort_artifact)
    assert manifest.source.model == "resnet20" and manifest.source.export["passed"]
    assert len(manifest.source.sha256) == 64
    assert manifest.backend == "ort" and manifest.tuned is False
    assert {"onnx", "onnxruntime", "numpy", "python"} <= set(manifest.versions)
    assert [t.model_dump() for t in manifest.inputs] == [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert manifest.outputs[0].name == "logits"
    assert manifest.verification.passed and manifest.verification.max_abs_err < 1e-4
    for name in manifest.files:
        assert (ort_artifact / name).is_file(), name


def test_user_onnx_with_awkward_names_compiles(tmp_path, user_model):
    src = tmp_path / "user.onnx"
    onnx.save(user_model(11), str(src))
    manifest = compile_artifact(str(src), CompileOptions(backend="ort"), tmp_path / "art")
    assert manifest.source.kind == "onnx" and manifest.source.opset_in == 11
    x = np.ones((2, 4), np.float32)
    out = run_artifact(tmp_path / "art", {"in/x:0": x})
    expected = run_onnxruntime(user_model(17), {"in/x:0": x})["out/y:0"]
    np.testing.assert_allclose(out["out/y:0"], expected, atol=1e-6)


def test_profile_reports_every_documented_key(ort_artifact):
    report = profile_artifact(ort_artifact, repeat=5, warmup=1, per_layer=True)
    for key in ("latency_ms", "throughput_per_s", "peak_rss_mb", "parameters", "dense_macs", "artifact_bytes", "max_abs_err"):
        assert key in report
    lat = report["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"]
    assert report["dense_macs"] == 10_314_048  # tiny ResNet-20 (width 8), BN folded into conv
    assert report["max_abs_err"] < 1e-4
    assert report["layers"] and report["layers"][0]["op_type"] == "Conv"
    assert report["layers"][0]["ms"] >= report["layers"][-1]["ms"]
    assert len(report["layers"]) == 10 < report["layers_timed"]


def test_profile_all_layers_carry_each_convs_macs_once(ort_artifact, cli):
    """Every conv and GEMM of the graph is one of ORT's timed nodes: their MACs add up to the graph's."""
    report = profile_artifact(ort_artifact, repeat=3, warmup=1, per_layer=True, top=None)
    assert len(report["layers"]) == report["layers_timed"]
    assert sum(t["macs"] or 0 for t in report["layers"]) == report["dense_macs"]
    assert sum(t["share"] for t in report["layers"]) == pytest.approx(1.0)
    assert all(t["macs"] is None for t in report["layers"] if not any(k in t["op_type"] for k in ("Conv", "Gemm", "MatMul")))
    res = cli("profile", str(ort_artifact), "--top", "3")
    assert res.returncode == 2 and "give --per-layer too" in res.stderr


def test_run_checks_names_shapes_and_dtypes(ort_artifact):
    good = np.zeros((2, 3, 32, 32), np.float32)
    assert run_artifact(ort_artifact, {"input": good})["logits"].shape == (2, 10)
    with pytest.raises(UsageError, match="missing"):
        run_artifact(ort_artifact, {"x": good})
    with pytest.raises(UsageError, match="dtype float64"):
        run_artifact(ort_artifact, {"input": good.astype(np.float64)})
    with pytest.raises(UsageError, match="shape"):
        run_artifact(ort_artifact, {"input": np.zeros((2, 3, 31, 32), np.float32)})


def test_failed_build_leaves_nothing_and_keeps_previous_artifact(tmp_path):
    out = tmp_path / "art"
    with pytest.raises(RuntimeError), atomic_dir(out, "manifest.json") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, "manifest.json") as tmp:
        raise KeyboardInterrupt
    assert json.loads((out / "manifest.json").read_text()) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_refuses_to_replace_a_directory_that_is_not_an_artifact(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(TridesignError, match="not a tridesign artifact"):
        compile_artifact("resnet20", CompileOptions(), precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_not_an_artifact_errors(tmp_path):
    with pytest.raises(TridesignError, match="not an artifact directory"):
        load_manifest(tmp_path / "nothing")
    with pytest.raises(TridesignError, match="no manifest.json"):
        load_manifest(tmp_path)


def test_an_artifact_directory_compiles_again_from_its_model(ort_artifact, tmp_path):
    """open_source: an artifact as SOURCE is its verified model.onnx (for another backend or target)."""
    manifest = compile_artifact(str(ort_artifact), CompileOptions(backend="ort"), tmp_path / "again")
    assert manifest.source.kind == "onnx" and manifest.source.path == str((ort_artifact / "model.onnx").resolve())
    assert manifest.verification.passed


def test_a_tvm_artifact_records_the_batch_it_was_built_for(tmp_path):
    """TVM specialises the symbolic batch: the manifest says so, and `run` refuses another batch up
    front with one line instead of failing inside TVM."""
    manifest = compile_artifact("resnet20", CompileOptions(backend="tvm"), tmp_path / "tvm")
    assert manifest.inputs[0].shape == [1, 3, 32, 32]
    assert run_artifact(tmp_path / "tvm", {"input": np.zeros((1, 3, 32, 32), np.float32)})["logits"].shape == (1, 10)
    with pytest.raises(UsageError, match=r"shape \[4, 3, 32, 32\], expected \[1, 3, 32, 32\]"):
        run_artifact(tmp_path / "tvm", {"input": np.zeros((4, 3, 32, 32), np.float32)})
