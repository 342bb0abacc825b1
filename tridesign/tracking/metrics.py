"""Tracking accuracy from TrackEval (the MOT challenge's official evaluation code): CLEAR (MOTA,
MOTP, ID switches), Identity (IDF1) and HOTA.

No metric is computed here. This module only prepares what TrackEval's metric classes take for one
sequence, the way its `MotChallenge2DBox` dataset prepares MOT17, but from rows in memory instead
of a benchmark folder layout: per frame, the gt and tracker ids (relabelled 0..n-1) and the IoU
matrix between their boxes (TrackEval's own IoU function). The MOT17 conventions kept:

* CLEAR and Identity match at IoU >= 0.5; HOTA averages over its 19 thresholds 0.05..0.95;
* a gt row with ``conf`` 0 is ignored, and a tracker box that matches an ignored row at IoU 0.5
  (Hungarian, as TrackEval does for MOT17's distractor classes) is removed rather than counted as
  a false positive;
* visibility does not filter: MOT17 scores every gt box, however occluded (our synthetic gt.txt
  only lists boxes with some visible pixels). `min_visibility` makes boxes below it ignored, for
  a study of how occlusion costs accuracy.

The detector is class-agnostic, so the class column is not used.
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

# TrackEval's package import prints to stdout when an optional dataset reader lacks pycocotools;
# stdout belongs to `--json`, so anything it says goes to stderr.
with contextlib.redirect_stdout(sys.stderr):
    from trackeval.datasets._base_dataset import _BaseDataset
    from trackeval.metrics import CLEAR, HOTA, Identity

from tridesign.errors import TridesignError
from tridesign.tracking.mot import MotRow

MATCH_IOU = 0.5


def score(gt_rows: Sequence[MotRow], result_rows: Sequence[MotRow], num_frames: int,
          min_visibility: float = 0.0) -> dict:
    """MOTA, IDF1, HOTA and the counts behind them for one sequence of `num_frames` frames.

    Keys: MOTA, MOTP, IDF1, IDP, IDR, HOTA, DetA, AssA, LocA (fractions, TrackEval's definitions,
    HOTA's averaged over its thresholds), IDTP, IDFP, IDFN (IDF1's counts, to combine sequences), IDSW, FP, FN, TP, MT, PT, ML, Frag, num_gt (scored gt
    boxes), num_ignored (gt boxes ignored), num_results (tracker boxes scored), num_gt_ids,
    num_result_ids, frames. With no gt MOTA is -FP as TrackEval defines it (FP over max(1, 0)).
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    for name, rows in (("ground truth", gt_rows), ("results", result_rows)):
        late = [r.frame for r in rows if r.frame > num_frames]
        if late:
            raise TridesignError(f"{name} has rows for frame {max(late)} but the sequence has {num_frames} frames")
    data = _sequence_data(gt_rows, result_rows, num_frames, min_visibility)
    clear = CLEAR({"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}).eval_sequence(data)
    identity = Identity({"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}).eval_sequence(data)
    hota = HOTA().eval_sequence(data)
    out = {key: float(clear[key]) for key in ("MOTA", "MOTP")}
    out |= {key: float(identity[key]) for key in ("IDF1", "IDP", "IDR")}
    out |= {key: int(identity[key]) for key in ("IDTP", "IDFP", "IDFN")}
    out |= {key: float(np.mean(hota[key])) for key in ("HOTA", "DetA", "AssA", "LocA")}
    counts = {"IDSW": "IDSW", "FP": "CLR_FP", "FN": "CLR_FN", "TP": "CLR_TP", "MT": "MT", "PT": "PT", "ML": "ML", "Frag": "Frag"}
    out |= {key: int(clear[field]) for key, field in counts.items()}
    return out | {"num_gt": data["num_gt_dets"], "num_ignored": data["num_ignored"],
                  "num_results": data["num_tracker_dets"], "num_gt_ids": data["num_gt_ids"],
                  "num_result_ids": data["num_tracker_ids"], "frames": num_frames}


def _xywh(rows: list[MotRow]) -> np.ndarray:
    return np.array([[r.left, r.top, r.width, r.height] for r in rows], float).reshape(-1, 4)


def _by_frame(rows: Sequence[MotRow], what: str) -> dict[int, list[MotRow]]:
    frames: dict[int, list[MotRow]] = defaultdict(list)
    for row in rows:
        frames[row.frame].append(row)
    for frame, group in frames.items():
        ids = [r.ident for r in group]
        if len(set(ids)) != len(ids):
            raise TridesignError(f"{what} repeats an id in frame {frame}")
    return frames


def _sequence_data(gt_rows: Sequence[MotRow], result_rows: Sequence[MotRow], num_frames: int,
                   min_visibility: float) -> dict:
    """TrackEval's per-sequence input: ids per frame (0-based, contiguous) and IoU matrices."""
    gt_frames, result_frames = _by_frame(gt_rows, "ground truth"), _by_frame(result_rows, "results")
    gt_ids, tracker_ids, similarity = [], [], []
    num_ignored = 0
    for frame in range(1, num_frames + 1):
        gts, results = gt_frames.get(frame, []), result_frames.get(frame, [])
        ious = _BaseDataset._calculate_box_ious(_xywh(gts), _xywh(results), box_format="xywh")
        scored = np.array([r.conf != 0 and (r.visibility < 0 or r.visibility >= min_visibility) for r in gts], bool)
        keep = np.ones(len(results), bool)
        if len(gts) and len(results) and not scored.all():
            rows, cols = linear_sum_assignment(-np.where(ious >= MATCH_IOU - np.finfo(float).eps, ious, 0))
            on_ignored = (ious[rows, cols] >= MATCH_IOU - np.finfo(float).eps) & ~scored[rows]
            keep[cols[on_ignored]] = False
        num_ignored += int((~scored).sum())
        gt_ids.append(np.array([r.ident for r, s in zip(gts, scored) if s], int))
        tracker_ids.append(np.array([r.ident for r, k in zip(results, keep) if k], int))
        similarity.append(ious[np.ix_(scored, keep)])
    gt_ids, num_gt_ids = _relabel(gt_ids)
    tracker_ids, num_tracker_ids = _relabel(tracker_ids)
    return {"num_timesteps": num_frames, "gt_ids": gt_ids, "tracker_ids": tracker_ids,
            "similarity_scores": similarity, "num_gt_ids": num_gt_ids, "num_tracker_ids": num_tracker_ids,
            "num_gt_dets": sum(len(i) for i in gt_ids), "num_tracker_dets": sum(len(i) for i in tracker_ids),
            "num_ignored": num_ignored}


def _relabel(ids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map ids onto 0..n-1 (TrackEval indexes arrays with them) keeping their order."""
    unique = np.unique(np.concatenate(ids)) if ids else np.zeros(0, int)
    return [np.searchsorted(unique, i).astype(int) for i in ids], len(unique)
