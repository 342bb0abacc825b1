"""Frame dropping and patch dropping: counts, the content policy, areas, kept boxes, the Sobel score."""

from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest

from tridesign.data.video_sparsity import (
    DEFAULT_MAX_DROPPED_RUN,
    parse_frame_drop,
    patch_areas,
    patch_mask,
    patch_scores,
    to_network_mask,
)
from tridesign.errors import UsageError


@pytest.mark.parametrize("rate, frames", [("0.4", 100), ("0.4", 7), ("0.25", 33), ("0.9", 50), ("0.3", 30), ("0.35", 40)])
def test_rate_policy_keeps_the_expected_count_evenly(rate, frames):
    dropper = parse_frame_drop(f"rate:{rate}")
    keeps = [dropper.keep(i, None) for i in range(frames)]
    assert keeps[0]
    assert sum(keeps) == math.ceil(frames * (1 - Fraction(rate)))
    gaps = np.diff(np.flatnonzero(keeps))
    assert gaps.max() - gaps.min() <= 1  # evenly spread


def test_a_bare_number_is_a_rate_and_zero_or_none_keeps_everything():
    assert parse_frame_drop("0.4").text == "rate:0.4"
    for text in (None, "0", "none"):
        dropper = parse_frame_drop(text)
        assert all(dropper.keep(i, None) for i in range(20))


@pytest.mark.parametrize("text", ["1", "1.5", "-0.1", "abc", "rate:x", "diff:a", "diff:0.5:0", "diff:1:2:3", "fast:0.4"])
def test_bad_frame_drop_text_is_a_one_line_usage_error(text):
    with pytest.raises(UsageError) as err:
        parse_frame_drop(text)
    assert "\n" not in str(err.value)


def _scene(moving: list[int], seed: int = 0) -> list[np.ndarray]:
    """Frames of a textured static background with a textured square moving by `moving[t]` pixels."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, (120, 400, 3), dtype=np.uint8)
    square = rng.integers(120, 255, (40, 40, 3), dtype=np.uint8)
    frames, x = [], 10
    for step in moving:
        x += step
        frame = background.copy()
        frame[40:80, x:x + 40] = square
        frames.append(frame)
    return frames


def test_diff_policy_drops_a_static_scene_as_far_as_k_allows_and_keeps_motion_onset():
    frames = _scene([0] * 30 + [6] * 4)
    dropper = parse_frame_drop("diff")
    keeps = [dropper.keep(i, f) for i, f in enumerate(frames)]
    static = keeps[3:30]
    assert sum(1 for k in static if not k) == pytest.approx(len(static) * DEFAULT_MAX_DROPPED_RUN / (DEFAULT_MAX_DROPPED_RUN + 1), abs=1)
    runs = "".join("k" if k else "d" for k in keeps)
    assert "d" * (DEFAULT_MAX_DROPPED_RUN + 1) not in runs
    assert all(keeps[31:33])  # the object starts moving: more change than lately


def test_diff_policy_keeps_a_scene_where_more_and_more_moves():
    rng = np.random.default_rng(3)
    background = rng.integers(0, 80, (240, 400, 3), dtype=np.uint8)
    squares = [rng.integers(120, 255, (30, 30, 3), dtype=np.uint8) for _ in range(8)]
    frames = []
    for t in range(20):
        frame = background.copy()
        for j, square in enumerate(squares):  # square j starts moving at frame 2j + 1, 3 px a frame
            x, y = 10 + 3 * max(0, t - 2 * j - 1), 5 + 29 * j
            frame[y:y + 30, x:x + 30] = square
        frames.append(frame)
    dropper = parse_frame_drop("diff")
    assert all(dropper.keep(i, f) for i, f in enumerate(frames))


def test_patch_scores_are_higher_on_texture_than_on_flat_patches():
    rng = np.random.default_rng(1)
    frame = np.full((120, 180, 3), 100, np.uint8)
    frame[:, 60:120] = rng.integers(0, 255, (120, 60, 3), dtype=np.uint8)
    scores = patch_scores(frame, 60)
    assert scores.shape == (2, 3)
    # Scored at half scale (score_scale(60)): the texture's edge bleeds ~2 small pixels into the flat
    # neighbours, and area averaging damps pixel noise, so the margin is finite.
    assert scores[:, 1].min() > 5 * max(scores[:, 0].max(), scores[:, 2].max(), 1e-3)


def test_scores_rank_synthetic_video_patches_as_the_full_resolution_edges_do():
    from scipy.stats import spearmanr

    from tridesign.data.video_synth import SynthConfig, render

    frame, _ = next(render(SynthConfig(seed=4, frames=1, width=1280, height=720, objects=8)))
    small = patch_scores(frame, 60).ravel()
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mag = cv2.blur(cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)), (3, 3))
    reference = np.array([[mag[r * 60:(r + 1) * 60, c * 60:(c + 1) * 60].mean() for c in range(22)] for r in range(12)]).ravel()
    assert spearmanr(small, reference).statistic > 0.9


def test_partial_edge_patches_are_scored_and_sized_by_their_real_pixels():
    frame = np.full((130, 190, 3), 50, np.uint8)
    assert patch_scores(frame, 60).shape == (3, 4)
    areas = patch_areas((130, 190), 60)
    assert areas[2, 3] == 10 * 10 and areas[0, 0] == 3600 and areas.sum() == 130 * 190


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.35, 0.5])
def test_dropped_area_is_within_one_patch_of_the_request(fraction):
    rng = np.random.default_rng(2)
    frame_hw, patch = (720, 1280), 60
    scores = rng.random((12, 22))
    keep = patch_mask(scores, fraction, None, patch, frame_hw)
    dropped = patch_areas(frame_hw, patch)[~keep].sum()
    assert abs(dropped - fraction * 720 * 1280) <= patch * patch
    if fraction:
        assert scores[~keep].max() <= scores[keep].min()  # the lowest scores go first


def test_patches_under_kept_boxes_are_never_dropped():
    scores = np.zeros((4, 6))
    scores[0, 0] = 5.0  # only one patch has texture: every other patch is a candidate
    box = np.array([[70.0, 50.0, 130.0, 100.0]])  # overlaps rows 0-1, columns 1-2 (60 px patches)
    keep = patch_mask(scores, 0.6, box, 60, (240, 360))
    assert keep[0:2, 1:3].all()
    assert (~keep).sum() > 0
    edge = np.array([[119.0, 0.0, 120.0, 60.0]])  # touches column 1 by one pixel, column 2 not at all
    keep = patch_mask(np.zeros((4, 6)), 0.9, edge, 60, (240, 360))
    assert keep[0, 1] and not keep[0, 2]


def test_bad_patch_drop_is_a_usage_error():
    with pytest.raises(UsageError):
        patch_mask(np.zeros((2, 2)), 1.0)


def test_network_mask_maps_frame_patches_by_their_position():
    keep = np.ones((12, 22), bool)
    keep[:, 21] = False  # the partial last column of a 1280-wide frame: 20 of its 60 pixels
    keep[0, 0] = False
    net = to_network_mask(keep, (12, 22), frame_hw=(720, 1280), patch_px=60)
    assert net.shape == (1, 1, 12, 22) and net.dtype == np.float32
    assert net[0, 0, 0, 0] == 0 and net[0, 0, 1:, 21].all()  # network cell 21 lies mostly over patch 20
    assert to_network_mask(keep, (12, 22))[0, 0, 5, 21] == 0  # grid stretched: index to index
