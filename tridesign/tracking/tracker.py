"""ByteTrack-style multi-object tracker: IoU association with a Kalman motion model.

The video detector gives boxes and scores but no appearance embedding, so QDTrack's quasi-dense
matching has nothing to compare; association is ByteTrack's (Zhang et al., ECCV 2022) instead:

1. every track's box is predicted one frame ahead (`kalman.predict`);
2. detections are split by score: high (>= `high_score`) and low (`low_score` to `high_score`);
3. confirmed tracks, lost ones included, are matched to the high detections by IoU with the
   Hungarian algorithm (`scipy.optimize.linear_sum_assignment`), pairs under `match_iou` refused;
4. confirmed tracks still unmatched that were seen on the previous kept frame get a second chance
   against the low detections (occluded or blurred objects score low) at `low_match_iou`;
5. tentative tracks are matched to the high detections that are left at `tentative_match_iou`;
   a tentative track that misses is deleted, one matched `min_hits` times is confirmed;
6. high detections scoring `new_track_score` or more that nothing matched start tentative tracks
   (confirmed at once on the first kept frame, when there is nothing to confirm against);
7. a track unseen for more than `max_age` frames (dropped frames count) is deleted.

Temporal data sparsity: on a frame the detector does not run, `predict_only` moves every track by
its motion model and reports the tracks that were matched on the last kept frame at their
predicted boxes, so a dropped frame still has an output. Ids are 1, 2, 3... in order of
confirmation; a tentative track that dies never uses one. Everything is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from tridesign.tracking import kalman


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's defaults for MOT17 at 30 frames/s (its match_thresh 0.8 is a cost 1 - IoU), except
    the two score thresholds, lowered by 0.1 for the trained `qdtrack_center` (precision 0.94 at
    score 0.4): on a tuning video (`videos synth --seed 900`, HD, 8 objects, 150 frames; no
    benchmark or demo video) MOTA 0.749 -> 0.783, IDF1 0.833 -> 0.814."""

    high_score: float = 0.4  # detections at or above: first association and births
    low_score: float = 0.1  # detections below are discarded; between the two: second association
    new_track_score: float = 0.5  # an unmatched high detection starts a track only at or above this
    match_iou: float = 0.2  # least IoU for a match in the first association
    low_match_iou: float = 0.5  # ... in the second (low-score) association
    tentative_match_iou: float = 0.3  # ... between tentative tracks and the high detections left
    min_hits: int = 2  # matches (the first detection included) that confirm a track
    max_age: int = 30  # frames, kept or dropped, a track may go unmatched before it is deleted

    def __post_init__(self) -> None:
        if not 0 <= self.low_score <= self.high_score <= self.new_track_score:
            raise ValueError("need 0 <= low_score <= high_score <= new_track_score")
        if not all(0 < v <= 1 for v in (self.match_iou, self.low_match_iou, self.tentative_match_iou)):
            raise ValueError("IoU thresholds must lie in (0, 1]")
        if self.min_hits < 1 or self.max_age < 0:
            raise ValueError("need min_hits >= 1 and max_age >= 0")


@dataclass(frozen=True)
class TrackOut:
    """One reported track on one frame: id (from 1), 0-based (x1, y1, x2, y2) frame pixels, and the
    score of the detection it was last matched to."""

    id: int
    box: tuple[float, float, float, float]
    score: float


@dataclass(eq=False)  # identity, not field-wise (numpy) equality: tracks are looked up in lists
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    score: float
    hits: int = 1
    last_seen: int = 0  # frame number of the last match
    id: int = 0  # 0 while tentative
    seen_last_kept: bool = True  # matched on the most recent kept frame

    def box(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in kalman.cxcywh_to_xyxy(self.mean))

    def out(self) -> TrackOut:
        return TrackOut(self.id, self.box(), self.score)


class Tracker:
    """One video's tracker: call `update` on each kept frame and `predict_only` on each dropped
    one, in frame order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.frame = 0  # frames seen so far, kept and dropped
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._updated = False

    def update(self, detections: np.ndarray) -> list[TrackOut]:
        """Associate a kept frame's detections, (N, 5) [x1, y1, x2, y2, score] in frame pixels;
        returns the confirmed tracks matched on this frame, by id."""
        dets = np.asarray(detections, float)
        if dets.size == 0:
            dets = np.zeros((0, 5))
        elif dets.ndim != 2 or dets.shape[1] != 5:
            raise ValueError(f"detections must be (N, 5) [x1, y1, x2, y2, score], got shape {dets.shape}")
        self._step()
        cfg = self.config
        high = np.flatnonzero(dets[:, 4] >= cfg.high_score)
        low = np.flatnonzero((dets[:, 4] >= cfg.low_score) & (dets[:, 4] < cfg.high_score))
        confirmed = [t for t in self._tracks if t.id]
        tentative = [t for t in self._tracks if not t.id]
        recent = [t for t in confirmed if t.seen_last_kept]
        for track in self._tracks:
            track.seen_last_kept = False

        matched, high = self._associate(confirmed, dets, high, cfg.match_iou)
        second = [t for t in recent if t not in matched]
        self._associate(second, dets, low, cfg.low_match_iou)
        matched_tentative, high = self._associate(tentative, dets, high, cfg.tentative_match_iou)

        for track in tentative:
            if track not in matched_tentative:
                self._tracks.remove(track)
            elif track.hits >= cfg.min_hits:
                self._confirm(track)
        for index in high:
            if dets[index, 4] >= cfg.new_track_score:
                mean, cov = kalman.initiate(dets[index, :4])
                track = _Track(mean, cov, float(dets[index, 4]), last_seen=self.frame)
                self._tracks.append(track)
                if not self._updated or cfg.min_hits <= 1:
                    self._confirm(track)
        self._updated = True
        self._expire()
        return self._report()

    def predict_only(self) -> list[TrackOut]:
        """A dropped frame: move every track by its motion model, associate nothing; returns the
        confirmed tracks matched on the last kept frame at their predicted boxes."""
        self._step()
        self._expire()
        return self._report()

    def _step(self) -> None:
        """Advance the frame counter and predict every track one frame ahead (one batched call).
        A track that missed its last kept frame stops changing size, as in ByteTrack, so that a
        lost box drifts with its object instead of growing or shrinking away."""
        self.frame += 1
        if not self._tracks:
            return
        for track in self._tracks:
            if not track.seen_last_kept:
                track.mean[6:8] = 0
        means, covs = kalman.predict(np.stack([t.mean for t in self._tracks]), np.stack([t.cov for t in self._tracks]))
        for track, mean, cov in zip(self._tracks, means, covs):
            track.mean, track.cov = mean, cov

    def _associate(self, tracks: list[_Track], dets: np.ndarray, candidates: np.ndarray,
                   min_iou: float) -> tuple[list[_Track], np.ndarray]:
        """Hungarian assignment on 1 - IoU between predicted track boxes and detections
        `candidates`; updates matched tracks and returns them with the unmatched candidates."""
        if not tracks or not len(candidates):
            return [], candidates
        boxes = np.array([t.box() for t in tracks])
        iou = iou_matrix(boxes, dets[candidates, :4])
        rows, cols = linear_sum_assignment(1 - iou)
        keep = iou[rows, cols] >= min_iou
        matched = []
        for row, col in zip(rows[keep], cols[keep]):
            det = dets[candidates[col]]
            track = tracks[row]
            track.mean, track.cov = kalman.update(track.mean, track.cov, det[:4])
            track.score, track.hits, track.last_seen, track.seen_last_kept = float(det[4]), track.hits + 1, self.frame, True
            matched.append(track)
        return matched, np.delete(candidates, cols[keep])

    def _confirm(self, track: _Track) -> None:
        track.id, self._next_id = self._next_id, self._next_id + 1

    def _expire(self) -> None:
        self._tracks = [t for t in self._tracks if self.frame - t.last_seen <= self.config.max_age]

    def _report(self) -> list[TrackOut]:
        return sorted((t.out() for t in self._tracks if t.id and t.seen_last_kept), key=lambda o: o.id)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (x1, y1, x2, y2) boxes; 0 where a box has no area."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
