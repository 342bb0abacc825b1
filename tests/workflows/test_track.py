"""`tridesign track` end to end on a short synthetic video, with the tiny (untrained) detector config:
the files it writes, the sparsity it measures and reports, and what it refuses before writing.

Accuracy is not asserted here (the tiny detector is random; the trained one is measured by
benchmarks/video_tridesign.py); the tracker and metrics have their own tests in tests/tracking."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from tridesign.annotations import read_data_sparsity
from tridesign.data.video import SynthConfig, synthesize
from tridesign.errors import TridesignError, UsageError
from tridesign.tracking.mot import read_mot
from tridesign.workflows.track import TrackOptions, track

FRAMES = 12


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("video")
    synthesize(SynthConfig(seed=11, frames=FRAMES, width=320, height=192, objects=3), root / "v")
    seq = root / "v" / "synth-0001"
    return next(seq.glob("synth-0001.*")), seq / "gt" / "gt.txt"


def tiny(**kw) -> TrackOptions:
    return TrackOptions(config="tiny", **kw)


def test_ort_run_writes_results_video_summary_and_annotated_model(video, tmp_path) -> None:
    source, gt = video
    out = tmp_path / "out"
    summary = track(source, out, tiny(gt=gt, frame_drop="0.5", patch_drop=0.25, patch_px=32))
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"])
    assert summary["frames"] == FRAMES and summary["kept_frames"] == FRAMES // 2
    # Every frame has rows for its live tracks, in MOT format that our own reader accepts.
    rows = read_mot(out / "results.txt") if (out / "results.txt").stat().st_size else []
    assert all(1 <= r.frame <= FRAMES for r in rows)
    capture = cv2.VideoCapture(str(out / next(f for f in summary["files"] if f.startswith("annotated"))))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()
    # ONNX Runtime computes everything: computed = dense for each kept frame; the mask needs less.
    macs = summary["macs"]
    assert macs["computed_total"] == macs["dense_per_frame"] * FRAMES // 2
    assert macs["active_total"] < macs["computed_total"] and macs["dense_total"] == macs["dense_per_frame"] * FRAMES
    assert 0.6 < summary["mean_active_patch_fraction"] < 0.9
    assert any("ONNX Runtime applies the patch mask" in n for n in summary["notes"])
    record = read_data_sparsity(onnx.load(str(out / "detector.onnx")))
    assert record.frame_keep_fraction == pytest.approx(0.5) and record.tile_px == 32
    assert record.active_tile_fraction == pytest.approx(summary["mean_active_patch_fraction"])
    assert record.layer_active_fraction and all(0 < v <= 1 for v in record.layer_active_fraction.values())
    assert set(summary["metrics"]) >= {"MOTA", "IDF1", "HOTA"}
    assert json.loads((out / "summary.json").read_text()) == summary


def test_tvm_tile_sparse_run_computes_what_the_mask_needs(video, tmp_path) -> None:
    source, _ = video
    ort = track(source, tmp_path / "ort", tiny(patch_drop=0.3, patch_px=32, video=False))
    tvm = track(source, tmp_path / "tvm", tiny(backend="tvm", patch_drop=0.3, patch_px=32, video=False))
    assert tvm["detector"]["tile_sparse"] and not ort["detector"]["tile_sparse"]
    # Same frames, same masks: the same MACs are needed; the tile kernels compute about that, not all.
    assert tvm["macs"]["active_total"] == ort["macs"]["active_total"]
    assert tvm["macs"]["active_total"] <= tvm["macs"]["computed_total"] < ort["macs"]["computed_total"]
    # Same detections up to fp32 rounding: results agree row for row (boxes to the 1/100 pixel written).
    assert (tmp_path / "tvm" / "results.txt").read_text() == (tmp_path / "ort" / "results.txt").read_text()


def test_simulate_reads_the_measured_sparsity(video, tmp_path, cli) -> None:
    source, _ = video
    out = tmp_path / "out"
    track(source, out, tiny(frame_drop="0.5", patch_drop=0.25, patch_px=32, video=False))
    done = cli("simulate", str(out), "--arch", "tridesign-alveo", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "measured by tridesign track" in report["data_sparsity"]["source"]
    assert report["totals"]["effective_fps"] == pytest.approx(report["totals"]["fps"] / 0.5)


@pytest.mark.parametrize(("kw", "error", "words"), [
    ({"frame_drop": "sometimes"}, UsageError, "--frame-drop"),
    ({"patch_drop": 1.0}, UsageError, "--patch-drop"),
    ({"backend": "trt"}, UsageError, "--backend"),
    ({"quantize": "int4"}, UsageError, "--quantize must be int8"),
    ({"quantize": "int8", "backend": "tvm", "patch_drop": 0.2}, UsageError, "tile-sparse TVM detector runs float weights"),
])
def test_bad_options_are_refused_before_writing(video, tmp_path, kw, error, words) -> None:
    with pytest.raises(error, match=words):
        track(video[0], tmp_path / "out", tiny(**kw))
    assert list(tmp_path.iterdir()) == []


def test_bad_sources_and_ground_truth_are_refused_before_writing(video, tmp_path) -> None:
    source, gt = video
    bad_gt = tmp_path / "gt.txt"
    bad_gt.write_text("1,2,3\n")
    with pytest.raises(TridesignError, match="gt.txt"):
        track(source, tmp_path / "out", tiny(gt=bad_gt))
    long_gt = tmp_path / "long.txt"
    long_gt.write_text(gt.read_text() + f"{FRAMES + 5},1,10,10,20,20,1,1,1\n")
    with pytest.raises(UsageError, match=f"has {FRAMES} frames"):
        track(source, tmp_path / "out", tiny(gt=long_gt))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(TridesignError, match="empty.mp4"):
        track(empty, tmp_path / "out", tiny())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4", "gt.txt", "long.txt"]


def test_interrupt_leaves_nothing(video, tmp_path) -> None:
    def stop(done: int, total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        track(video[0], tmp_path / "out", tiny(), on_frame=stop)
    assert list(tmp_path.iterdir()) == []


def test_image_directory_source(video, tmp_path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(video[0]))
    for i in range(4):
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"{i:04d}.png"), frame)
    capture.release()
    summary = track(frames, tmp_path / "out", tiny(video=False))
    assert summary["frames"] == 4 and summary["kept_frames"] == 4
    assert np.isclose(summary["mean_active_patch_fraction"], 1.0)


def test_cli_one_line_errors(video, tmp_path, cli) -> None:
    done = cli("track", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out"), "--config", "tiny")
    assert done.returncode == 1 and "no such file" in done.stderr and "Traceback" not in done.stderr
    done = cli("track", str(video[0]), "-o", str(tmp_path / "out"), "--config", "tiny", "--patch-drop", "2")
    assert done.returncode == 2 and "--patch-drop" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
