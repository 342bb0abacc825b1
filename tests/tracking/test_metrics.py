"""TrackEval driven with in-memory sequences: perfect tracking scores 1, a hand-counted case gives
the counts and MOTA/IDF1/HOTA worked out below, and the MOT17 conventions (IoU 0.5, ignored rows)
hold. The arithmetic in the tests checks the library call; the product computes no metric."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tridesign.errors import TridesignError
from tridesign.tracking.metrics import score
from tridesign.tracking.mot import MotRow


def box(frame: int, ident: int, left: float, top: float, size: float = 20, conf: float = 1, vis: float = 1.0) -> MotRow:
    return MotRow(frame, ident, left, top, size, size, conf, 1, vis)


GT = [box(t, 1, 10 + 5 * t, 10) for t in range(1, 5)] + [box(t, 2, 200, 200 + 5 * t) for t in range(1, 5)]


def test_ground_truth_against_itself_scores_one():
    result = score(GT, GT, 4)
    assert (result["MOTA"], result["IDF1"], result["HOTA"], result["MOTP"]) == (1.0, 1.0, 1.0, 1.0)
    assert (result["IDSW"], result["FP"], result["FN"], result["TP"], result["num_gt"]) == (0, 0, 0, 8, 8)


def test_hand_counted_case():
    """gt 1 is followed by track 10 on frames 1-3 and missed on frame 4 (1 FN); gt 2 is followed by
    track 20 on frames 1-2, then by track 30 on frames 3-4 (1 ID switch); track 40 covers nothing
    on frame 4 (1 FP). Boxes are exact, so every match has IoU 1.

    CLEAR: 8 gt boxes, TP 7, FN 1, FP 1, IDSW 1: MOTA = 1 - (1 + 1 + 1) / 8 = 0.625.
    Identity: best one-to-one id pairing is gt1-10 (3 frames) and gt2-20 or gt2-30 (2 frames):
    IDTP 5, IDF1 = 2 * 5 / (8 gt + 8 tracker boxes) = 0.625.
    HOTA (the same at every threshold, IoU being 1): DetA = TP / (TP + FN + FP) = 7 / 9; AssA over the
    7 TPs: gt1-10 has 3 / (4 + 3 - 3) = 3/4 for 3 TPs, gt2-20 and gt2-30 2 / (4 + 2 - 2) = 1/2 for 2
    TPs each: AssA = (3 * 3/4 + 4 * 1/2) / 7 = 4.25 / 7; HOTA = sqrt(DetA * AssA) = sqrt(4.25 / 9).
    """
    results = [box(t, 10, 10 + 5 * t, 10) for t in range(1, 4)]
    results += [box(t, 20, 200, 200 + 5 * t) for t in (1, 2)] + [box(t, 30, 200, 200 + 5 * t) for t in (3, 4)]
    results += [box(4, 40, 400, 400)]
    result = score(GT, results, 4)
    assert (result["TP"], result["FN"], result["FP"], result["IDSW"], result["num_gt"]) == (7, 1, 1, 1, 8)
    assert result["MOTA"] == pytest.approx(0.625)
    assert result["IDF1"] == pytest.approx(0.625)
    assert result["DetA"] == pytest.approx(7 / 9)
    assert result["AssA"] == pytest.approx(4.25 / 7)
    assert result["HOTA"] == pytest.approx(math.sqrt(4.25 / 9))
    assert (result["num_gt_ids"], result["num_result_ids"]) == (2, 4)


def test_clear_matches_at_iou_one_half():
    """A 20x20 box shifted by 6 px has IoU 14/26 = 0.54 (a match); by 8 px 12/28 = 0.43 (FP + FN)."""
    gt = [box(1, 1, 100, 100)]
    assert score(gt, [box(1, 5, 106, 100)], 1)["TP"] == 1
    missed = score(gt, [box(1, 5, 108, 100)], 1)
    assert (missed["TP"], missed["FP"], missed["FN"], missed["MOTA"]) == (0, 1, 1, -1.0)


def test_ignored_rows_neither_count_nor_penalise():
    """A conf-0 gt row is not scored, and the tracker box on it is dropped, not a false positive."""
    gt = GT + [box(2, 3, 400, 400, conf=0)]
    results = GT + [box(2, 7, 401, 400)]
    result = score(gt, results, 4)
    assert (result["MOTA"], result["FP"], result["num_gt"], result["num_ignored"], result["num_results"]) == (1.0, 0, 8, 1, 8)
    elsewhere = score(gt, GT + [box(2, 7, 600, 400)], 4)
    assert elsewhere["FP"] == 1


def test_min_visibility_ignores_occluded_rows():
    gt = [box(1, 1, 10, 10, vis=0.9), box(1, 2, 100, 10, vis=0.05)]
    assert score(gt, gt[:1], 1)["FN"] == 1
    strict = score(gt, gt[:1], 1, min_visibility=0.1)
    assert (strict["FN"], strict["MOTA"], strict["num_ignored"]) == (0, 1.0, 1)


def test_empty_sequences_do_not_crash():
    no_results = score(GT, [], 4)
    assert (no_results["FN"], no_results["MOTA"], no_results["IDF1"], no_results["HOTA"]) == (8, 0.0, 0.0, 0.0)
    no_gt = score([], GT, 4)
    assert (no_gt["FP"], no_gt["num_gt"], no_gt["HOTA"]) == (8, 0, 0.0)
    nothing = score([], [], 10)
    assert (nothing["TP"], nothing["FP"], nothing["FN"], nothing["frames"]) == (0, 0, 0, 10)


def test_rows_past_the_sequence_or_repeated_ids_are_refused():
    with pytest.raises(TridesignError, match="ground truth has rows for frame 4 but the sequence has 3 frames"):
        score(GT, GT, 3)
    with pytest.raises(TridesignError, match="results repeats an id in frame 1"):
        score(GT, GT + [box(1, 1, 300, 300)], 4)


def test_importing_the_metrics_keeps_stdout_clean():
    """`--json` owns stdout: TrackEval's import-time messages (it prints one when pycocotools, an
    optional need of its dataset readers, is missing, as here) must not land there."""
    code = "import sys; sys.modules['pycocotools'] = None; import tridesign.tracking.metrics"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stderr
