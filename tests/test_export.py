"""torch -> ONNX export: structure, numbers (atol stated per model) and failure modes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tridesign.compiler.export import export_model
from tridesign.verification import compare_outputs, run_onnxruntime
from tridesign.errors import TridesignError, UsageError
from tridesign.models import get_model
from tridesign.models.deepzero import build_resnet20, resnet20_macs


def test_resnet20_paper_has_published_size_and_hand_counted_macs():
    import torch

    with torch.device("meta"):
        model = build_resnet20("paper")
    params = sum(p.numel() for p in model.parameters())
    # He et al. report 0.27 M; option-B projection shortcuts add 2.7 k, still within 2 %.
    assert abs(params - 269_722) / 269_722 < 0.02
    # Hand count: stem 3*16*9*32*32 + 3 stages of 3 blocks + 2 projection shortcuts + fc.
    stem = 3 * 16 * 9 * 32 * 32
    stage1 = 6 * 16 * 16 * 9 * 32 * 32
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32 + 4 * 32 * 32 * 9) * 16 * 16
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64 + 4 * 64 * 64 * 9) * 8 * 8
    assert resnet20_macs() == stem + stage1 + stage2 + stage3 + 64 * 10 == 40_813_184


def test_export_matches_torch_and_passes_checker(tmp_path):
    path = tmp_path / "r.onnx"
    report = export_model("resnet20", "tiny", path, batch=2)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert report.passed and report.max_abs_err <= 1e-4
    assert [o.name for o in model.graph.output] == ["logits"]
    # The batch axis is dynamic: a batch of 3 runs through the file exported with 2.
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    assert run_onnxruntime(model, {"input": x})["logits"].shape == (3, 10)


def test_export_is_deterministic_for_a_seed(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_model("resnet20", "tiny", a, seed=3)
    export_model("resnet20", "tiny", b, seed=3)
    assert a.read_bytes() == b.read_bytes()


def test_unknown_model_and_config_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown model 'nope'.*resnet20"):
        export_model("nope", "tiny", tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="no config 'huge'"):
        export_model("resnet20", "huge", tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_compare_outputs_reports_worst_output():
    ref = {"a": np.array([1.0, -2.0]), "b": np.array([10.0])}
    got = {"a": np.array([1.0, -2.5]), "b": np.array([10.1])}
    max_abs, max_rel = compare_outputs(ref, got)
    assert max_abs == pytest.approx(0.5) and max_rel == pytest.approx(0.25)
    with pytest.raises(TridesignError, match="shape"):
        compare_outputs(ref, {"a": np.zeros(3), "b": np.zeros(1)})


def test_registry_spec_inputs_are_seeded_numpy():
    spec = get_model("resnet20")
    a, b = spec.example_inputs("tiny", 2, 5), spec.example_inputs("tiny", 2, 5)
    assert list(a) == ["input"] and a["input"].dtype == np.float32 and a["input"].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(a["input"], b["input"])
