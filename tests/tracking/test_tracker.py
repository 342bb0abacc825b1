"""The ByteTrack-style tracker: track life cycle, both association rounds, dropped frames, and a
synthetic video tracked from jittered ground-truth detections with 40 % of the frames dropped."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tridesign.data.video_synth import SynthConfig, render
from tridesign.tracking import MotRow, Tracker, TrackerConfig, iou_matrix, score


def det(x: float, y: float, s: float = 0.9, size: float = 40) -> list[float]:
    return [x, y, x + size, y + size, s]


def test_first_frame_confirms_and_ids_start_at_one():
    tracker = Tracker()
    out = tracker.update(np.array([det(300, 10), det(10, 10), det(100, 200)]))
    assert [o.id for o in out] == [1, 2, 3]
    assert out[0].box == pytest.approx((300, 10, 340, 50)) and out[0].score == pytest.approx(0.9)


def test_later_tracks_wait_for_min_hits_and_dead_tentatives_use_no_id():
    tracker = Tracker(TrackerConfig(min_hits=2))
    assert [o.id for o in tracker.update(np.array([det(10, 10)]))] == [1]
    assert [o.id for o in tracker.update(np.array([det(12, 10), det(200, 200)]))] == [1]  # new one tentative
    assert [o.id for o in tracker.update(np.array([det(14, 10)]))] == [1]  # and gone: it missed
    assert [o.id for o in tracker.update(np.array([det(16, 10), det(300, 300)]))] == [1]
    assert [o.id for o in tracker.update(np.array([det(18, 10), det(302, 300)]))] == [1, 2]


def test_low_score_detections_continue_tracks_but_start_none():
    tracker = Tracker(TrackerConfig(high_score=0.5, low_score=0.1))
    tracker.update(np.array([det(10, 10, 0.9)]))
    out = tracker.update(np.array([det(12, 10, 0.3), det(200, 200, 0.3)]))  # occluded: low score
    assert [(o.id, o.score) for o in out] == [(1, 0.3)]
    assert tracker.update(np.array([det(14, 10, 0.05)])) == []  # below low_score: discarded, track lost
    assert tracker.update(np.array([det(16, 10, 0.3)])) == []  # a lost track gets no low-score second chance
    assert [o.id for o in tracker.update(np.array([det(18, 10, 0.9)]))] == [1]  # but is found by a high one


def test_dropped_frames_report_motion_model_predictions():
    tracker = Tracker()
    for t in range(20):
        tracker.update(np.array([det(10 + 3 * t, 50 - 1 * t)]))
    last = np.array(det(10 + 3 * 19, 50 - 19)[:4])
    for k in range(1, 6):
        out = tracker.predict_only()
        assert [o.id for o in out] == [1]
        np.testing.assert_allclose(out[0].box, last + k * np.array([3, -1, 3, -1]), atol=0.3)
    out = tracker.update(np.array([det(10 + 3 * 25, 50 - 25)]))
    assert [o.id for o in out] == [1] and tracker.frame == 26


def test_lost_tracks_come_back_within_max_age_and_die_after():
    tracker = Tracker(TrackerConfig(max_age=5))
    tracker.update(np.array([det(100, 100)]))
    for _ in range(5):
        assert tracker.update(np.zeros((0, 5))) == []
    assert [o.id for o in tracker.update(np.array([det(100, 100)]))] == [1]  # unseen 5 frames: kept
    for _ in range(6):
        tracker.predict_only()  # dropped frames count towards max_age
    tracker.update(np.array([det(100, 100)]))
    assert [o.id for o in tracker.update(np.array([det(100, 100)]))] == [2]  # unseen 7: a new track


def test_predict_only_before_any_detection_and_bad_input():
    tracker = Tracker()
    assert tracker.predict_only() == [] and tracker.update([]) == []
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        tracker.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="low_score"):
        TrackerConfig(high_score=0.7, new_track_score=0.6)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0], [0, 0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 2)


def track_synthetic(drop_rate: float, seed: int) -> tuple[list[MotRow], list[MotRow]]:
    """Detections = gt boxes with 3 % jitter of their size and scores in [0.6, 0.95]; frames are
    dropped at random (never the first) and bridged with `predict_only`."""
    frames = [rows for _, rows in render(SynthConfig(frames=60, objects=5), 0)]
    gt = [MotRow(r.frame, r.ident, r.left, r.top, r.width, r.height, 1.0, 1, r.visibility) for rows in frames for r in rows]
    rng = np.random.default_rng(seed)
    dropped = rng.random(len(frames)) < drop_rate
    dropped[0] = False
    tracker, results = Tracker(), []
    for t, rows in enumerate(frames, 1):
        if dropped[t - 1]:
            outs = tracker.predict_only()
        else:
            boxes = np.array([MotRow(r.frame, r.ident, r.left, r.top, r.width, r.height).xyxy() for r in rows]).reshape(-1, 4)
            size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
            dets = np.column_stack([boxes + rng.normal(0, 0.03, boxes.shape) * size, rng.uniform(0.6, 0.95, len(boxes))])
            outs = tracker.update(dets)
        results += [MotRow.from_xyxy(t, o.id, o.box, o.score) for o in outs]
    return gt, results


def test_synthetic_video_with_dropped_frames_is_tracked():
    start = time.perf_counter()
    gt, results = track_synthetic(drop_rate=0.4, seed=0)
    elapsed = time.perf_counter() - start
    result = score(gt, results, 60)
    assert result["MOTA"] > 0.9 and result["IDF1"] > 0.9, result
    assert result["IDSW"] <= 1 and result["num_result_ids"] <= 6, result
    assert elapsed < 5
    assert track_synthetic(drop_rate=0.4, seed=0)[1] == results  # deterministic
