"""The tracker's detector `qdtrack_center`: training steps, recovery contract, weights cache, zoo entry.

Everything runs on the tiny config (64x96 input) with a few synthetic clips; the full training of
the track config never runs here (its cache is redirected to a temporary directory).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tridesign.data.detections import TRAIN_SEED, synthetic_frames
from tridesign.models import get_model
from tridesign.models import video_training as vt

TINY_HW = (64, 96)


@pytest.fixture
def few_clips(monkeypatch):
    """Training and validation on two short clips each, so nothing renders the full sets."""
    monkeypatch.setattr(vt, "TRAIN_SEQUENCES", 2)
    monkeypatch.setattr(vt, "VAL_SEQUENCES", 1)
    return synthetic_frames(TINY_HW, TRAIN_SEED, 2)


def _tiny():
    import torch

    from tridesign.models.video_detector import build_center_detector

    torch.manual_seed(0)
    return build_center_detector("tiny")


def test_a_few_training_steps_lower_the_loss(few_clips):
    losses = vt.train_steps(_tiny(), 20, batch=4, frames=few_clips)
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_masks_are_reapplied_after_every_step(few_clips):
    import torch

    model = _tiny()
    weight = model.backbone.layer1[0].conv1.weight
    mask = (torch.rand_like(weight) > 0.5).float()
    with torch.no_grad():
        weight.mul_(mask)
    before = weight.detach().clone()
    vt.train_steps(model, 3, batch=4, frames=few_clips, masks={"backbone.layer1.0.conv1.weight": mask})
    assert not weight.detach()[mask == 0].any()
    assert not torch.equal(weight.detach()[mask == 1], before[mask == 1]), "the kept weights trained"


def test_evaluate_reports_ap_between_zero_and_one_with_and_without_patch_drop(few_clips):
    model = _tiny()
    dense, dropped = vt.evaluate(model, few_clips), vt.evaluate(model, few_clips, patch_drop=0.3)
    assert 0.0 <= dense <= 1.0 and 0.0 <= dropped <= 1.0


def test_patch_drop_never_drops_a_cell_holding_an_object_centre():
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 30, 30], [40, 10, 90, 60]], np.float32)  # centres in cells (0, 0) and (2, 4)
    for _ in range(20):
        mask = vt._patch_mask(TINY_HW, boxes, 1.0, rng)
        assert mask.shape == (1, 4, 6) and mask[0, 0, 0] == 1 and mask[0, 2, 4] == 1
        assert mask.sum() == 2


def test_recovery_after_pattern_pruning_keeps_the_pattern(few_clips):
    from tridesign.compiler.sparsity import prune_torch, recover_torch
    from tridesign.sparsity_plan import load_plan

    model = _tiny()
    spec = get_model("qdtrack_center")
    report = prune_torch(model, load_plan("pattern:4:0.9"), spec.example_inputs("tiny", 1, 0))
    result = recover_torch(model, "qdtrack_center", 4)
    assert result["steps"] == 4 and result["data"] == "video_training"
    assert 0.0 <= result["accuracy_after"] <= 1.0
    params = dict(model.named_parameters())
    for name, rec in report.records.items():
        assert not params[name].detach().numpy()[~rec.mask].any(), name


def test_weights_are_trained_once_then_loaded_from_the_cache(monkeypatch, tmp_path, few_clips):
    import torch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(vt, "TRAIN_STEPS", 3)
    first = vt.load_trained_center("tiny")
    path = vt.weights_path("tiny")
    assert path.exists() and path.parent == tmp_path / "tridesign" and f"v{vt.RECIPE_VERSION}" in path.name
    meta = vt.cached_meta("tiny")
    assert meta["steps"] == 3 and 0.0 <= meta["ap50"] <= 1.0

    def no_training(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded")

    monkeypatch.setattr(vt, "train_center_detector", no_training)
    again = vt.load_trained_center("tiny")
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_zoo_entry_inputs_and_calibration():
    spec = get_model("qdtrack_center")
    assert spec.default_config == "track" and spec.configs == ("tiny", "track", "paper")
    inputs = spec.example_inputs("tiny", 2, 0)
    assert list(inputs) == ["image", "patch_mask"]
    assert inputs["image"].shape == (2, 3, *TINY_HW) and inputs["patch_mask"].shape == (2, 1, 4, 6)
    assert 0.0 <= inputs["image"].min() and inputs["image"].max() <= 1.0 and inputs["image"].std() > 0.05
    batches = spec.calibration("tiny", 0)
    assert len(batches) == 8 and all(b["image"].shape == (1, 3, *TINY_HW) for b in batches)
    assert not np.array_equal(batches[0]["image"], batches[-1]["image"])


def test_tiny_export_verifies_against_torch(ort_artifact_for):
    manifest = json.loads((ort_artifact_for("qdtrack_center") / "manifest.json").read_text())
    export = manifest["source"]["export"]
    assert export["passed"] and export["max_abs_err"] <= get_model("qdtrack_center").atol


@pytest.mark.slow
def test_trained_track_detector_reaches_its_recorded_quality():
    """The real thing (trains for about 5 minutes on 2 cores when nothing is cached)."""
    model = vt.load_trained_center("track")
    ap = vt.evaluate(model)
    assert ap >= 0.75
    assert ap == pytest.approx(vt.cached_meta("track")["ap50"], abs=1e-6)
