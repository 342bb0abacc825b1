"""Centre-point targets and decoding (numpy): what training encodes, decoding gives back."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.data.detections import (
    average_precision,
    decode,
    encode_targets,
    network_input,
    scale_boxes,
    synthetic_frames,
    truth_boxes,
)
from tridesign.data.video_synth import Truth

HW = (192, 352)


def _boxes(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.random((count, 2)) * [HW[1] - 70, HW[0] - 70]
    wh = 3 + rng.random((count, 2)) * 64
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _ideal_outputs(targets: dict[str, np.ndarray], peak_logit: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """What a perfect detector outputs: a peak logit at each centre, the encoded box values there."""
    h, w = targets["heatmap"].shape
    heat = np.full(h * w, -8.0, np.float32)
    heat[targets["index"]] = peak_logit
    boxes = np.zeros((4, h * w), np.float32)
    boxes[:2, targets["index"]] = targets["offset"].T
    boxes[2:, targets["index"]] = targets["size"].T
    return heat.reshape(1, 1, h, w), boxes.reshape(1, 4, h, w)


def _sorted(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes[:, :4].T[::-1])][:, :4]


def test_encode_then_decode_gives_the_boxes_back():
    boxes = _boxes(12)
    targets = encode_targets(boxes, HW)
    assert len(set(targets["index"].tolist())) == 12, "the seeded boxes have distinct centre cells"
    heat, box_maps = _ideal_outputs(targets)
    dets = decode(heat, box_maps, score_threshold=0.5, max_detections=100)
    assert dets.shape == (12, 5)
    np.testing.assert_allclose(_sorted(dets), _sorted(boxes), atol=1e-4)
    assert average_precision([dets], [boxes]) == pytest.approx(1.0)


def test_heatmap_is_one_exactly_at_centres_and_gaussian_around():
    box = np.array([[40.0, 20.0, 104.0, 84.0]], np.float32)  # 64x64 px centred on (72, 52) -> cell (13, 18)
    t = encode_targets(box, HW)
    heat = t["heatmap"]
    assert heat.shape == (48, 88)
    assert heat[13, 18] == 1.0 and np.count_nonzero(heat == 1.0) == 1
    assert 0 < heat[13, 20] < heat[13, 19] < 1 and heat[0, 0] == 0
    np.testing.assert_allclose(t["offset"], [[0.0, 0.0]])
    np.testing.assert_allclose(t["size"], np.log([[16.0, 16.0]]))


def test_boxes_without_area_are_not_targets():
    t = encode_targets(np.array([[10, 10, 10, 30], [5, 5, 25, 25]], np.float32), HW)
    assert len(t["index"]) == 1


def test_decode_applies_threshold_and_top_k_best_first():
    targets = encode_targets(_boxes(6, seed=1), HW)
    heat, box_maps = _ideal_outputs(targets)
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0], np.float32)
    heat.reshape(-1)[targets["index"]] = logits
    scores = 1 / (1 + np.exp(-logits))
    above = decode(heat, box_maps, score_threshold=0.5, max_detections=100)
    np.testing.assert_allclose(above[:, 4], scores[:4], rtol=1e-6)  # sigmoid(0) = 0.5 is kept
    top2 = decode(heat, box_maps, score_threshold=0.0, max_detections=2)
    np.testing.assert_allclose(top2[:, 4], scores[:2], rtol=1e-6)
    assert decode(heat, box_maps, score_threshold=0.99, max_detections=10).shape == (0, 5)


def test_decode_keeps_only_local_maxima():
    heat = np.full((1, 1, 8, 8), -5.0, np.float32)
    heat[0, 0, 3, 3], heat[0, 0, 3, 4], heat[0, 0, 6, 6] = 2.0, 1.5, 1.0  # (3, 4) is a shoulder of (3, 3)
    dets = decode(heat, np.zeros((1, 4, 8, 8), np.float32), score_threshold=0.1, max_detections=10)
    assert len(dets) == 2
    np.testing.assert_allclose(dets[:, :4], [[10, 10, 14, 14], [22, 22, 26, 26]])  # centre at the cell corner, 4 px wide


def test_decode_rejects_a_batch():
    with pytest.raises(ValueError, match=r"\(1, 1, h, w\)"):
        decode(np.zeros((2, 1, 4, 4)), np.zeros((2, 4, 4, 4)), 0.5, 10)


def test_scale_boxes_maps_network_pixels_to_frame_pixels_and_back():
    dets = np.array([[0, 0, 352, 192, 0.9], [35.2, 19.2, 70.4, 38.4, 0.5]], np.float32)
    frame = scale_boxes(dets, HW, (720, 1280))
    np.testing.assert_allclose(frame[0], [0, 0, 1280, 720, 0.9], rtol=1e-6)
    np.testing.assert_allclose(frame[1, :4], [128, 72, 256, 144], rtol=1e-5)
    np.testing.assert_allclose(scale_boxes(frame, (720, 1280), HW), dets, rtol=1e-5)


def test_mot_rows_become_continuous_boxes():
    rows = [Truth(1, 1, left=1, top=1, width=10, height=20, visibility=1.0)]
    np.testing.assert_array_equal(truth_boxes(rows), [[0, 0, 10, 20]])
    assert truth_boxes([]).shape == (0, 4)


def test_network_input_resizes_converts_to_rgb_and_scales():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    x = network_input(frame, HW)
    assert x.shape == (1, 3, *HW) and x.dtype == np.float32
    assert x[0, 2].min() == 1.0 and x[0, :2].max() == 0.0


def test_average_precision_counts_misses_and_false_alarms():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    hit, wrong = [0, 0, 10, 10, 0.8], [50, 50, 60, 60, 0.9]
    assert average_precision([np.array([hit])], [truth]) == pytest.approx(0.5)  # half the recall, precise
    assert average_precision([np.array([wrong, hit])], [truth]) == pytest.approx(0.25)  # the hit ranks second
    assert average_precision([np.zeros((0, 5))], [np.zeros((0, 4))]) == 1.0


def test_synthetic_frames_are_seeded_and_boxes_lie_in_the_frame():
    a = synthetic_frames((64, 96), 1000, 1, frames_per_sequence=3)
    b = synthetic_frames.__wrapped__((64, 96), 1000, 1, frames_per_sequence=3)
    assert a.images.shape == (3, 64, 96, 3) and np.array_equal(a.images, b.images)
    boxes = np.concatenate(a.boxes)
    assert len(boxes) and boxes.min() >= 0 and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
