"""Centre-point detections in numpy: training targets, output decoding, scoring, synthetic frame sets.

The tracker's detector (`tridesign.models.video_detector`) predicts, at stride 4 of its input,
a centre heat-map (1 channel, logits) and a box map (4 channels). Cell (iy, ix) covers the
network-input pixels [ix*4, ix*4+4) x [iy*4, iy*4+4). Box channels at the cell of an object's
centre (cx, cy):

    0  dx = cx / stride - ix        sub-cell offset in [0, 1]
    1  dy = cy / stride - iy
    2  log(w / stride)              box size in output cells, as a log
    3  log(h / stride)

Boxes are in continuous pixel coordinates: pixel edges lie on integers and x2 = x1 + width, so a
MOT row (1-based left/top) is x1 = left - 1, y1 = top - 1. Everything here is numpy (plus OpenCV
and scipy): the device side, which has no torch, decodes the compiled detector's outputs with the
same code the training used to encode its targets.

Seeds of the synthetic frames: training uses seeds from `TRAIN_SEED` (1000) up, validation (the
detection quality the model reports) from `VAL_SEED` (5000) up; evaluation videos (benchmarks, the
demo, `tridesign videos synth` with its defaults) use seeds below 1000, so no evaluation frame is
ever trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from tridesign.data.video_synth import SynthConfig, Truth, render

STRIDE = 4
TRAIN_SEED = 1000
VAL_SEED = 5000
MIN_OVERLAP = 0.7  # CenterNet's Gaussian radius: a box shifted by it still overlaps the truth this much


def truth_boxes(rows: list[Truth]) -> np.ndarray:
    """MOT ground-truth rows -> (K, 4) float32 x1y1x2y2 in frame pixels (continuous coordinates)."""
    if not rows:
        return np.zeros((0, 4), np.float32)
    ltwh = np.array([[r.left - 1, r.top - 1, r.width, r.height] for r in rows], np.float32)
    return np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)


def network_image(frame_bgr: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A BGR uint8 frame -> (H, W, 3) uint8 RGB at the network's input size (OpenCV INTER_AREA)."""
    h, w = image_hw
    small = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_AREA) if frame_bgr.shape[:2] != (h, w) else frame_bgr
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def network_input(frame_bgr: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A BGR uint8 frame -> the detector's `image` input (1, 3, H, W) float32 RGB in [0, 1]."""
    return (network_image(frame_bgr, image_hw).transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)


def scale_boxes(dets: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Rescale the x1y1x2y2 columns of (N, >=4) boxes from an image of `from_hw` to one of `to_hw`."""
    out = np.array(dets, dtype=np.float32, copy=True)
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    out[:, 0:4:2] *= sx
    out[:, 1:4:2] *= sy
    return out


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (in cells) for a box of `height` x `width` cells: the largest corner shift
    that keeps IoU >= `min_overlap`, the smallest of its three cases (Law & Deng, CornerNet)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _draw_gaussian(heat: np.ndarray, ix: int, iy: int, radius: int) -> None:
    """Max-splat a Gaussian of sigma (2r+1)/6, exactly 1 at (iy, ix), onto `heat` in place."""
    sigma = (2 * radius + 1) / 6
    h, w = heat.shape
    x0, x1 = max(ix - radius, 0), min(ix + radius + 1, w)
    y0, y1 = max(iy - radius, 0), min(iy + radius + 1, h)
    ys, xs = np.ogrid[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
    blob = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma)).astype(np.float32)
    np.maximum(heat[y0:y1, x0:x1], blob, out=heat[y0:y1, x0:x1])


def encode_targets(boxes_xyxy: np.ndarray, image_hw: tuple[int, int], stride: int = STRIDE) -> dict[str, np.ndarray]:
    """Training targets of one image from its (K, 4) boxes in network-input pixels.

    Returns ``heatmap`` (H/stride, W/stride) float32 (a Gaussian per object, exactly 1 at its centre
    cell), and per object kept: ``index`` (K,) int64 flat centre cell (iy * w + ix), ``cell`` (K, 2)
    int64 (iy, ix), ``offset`` (K, 2) float32 (dx, dy) and ``size`` (K, 2) float32 (log(w/stride),
    log(h/stride)). Boxes without area are dropped: there is nothing to detect.
    """
    h, w = image_hw[0] // stride, image_hw[1] // stride
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / stride, (boxes[:, 1] + boxes[:, 3]) / 2 / stride
    ix = np.clip(np.floor(cx), 0, w - 1).astype(np.int64)
    iy = np.clip(np.floor(cy), 0, h - 1).astype(np.int64)
    heat = np.zeros((h, w), np.float32)
    for k in range(len(boxes)):
        radius = max(0, int(gaussian_radius(bh[k] / stride, bw[k] / stride)))
        _draw_gaussian(heat, int(ix[k]), int(iy[k]), radius)
    return {
        "heatmap": heat,
        "index": iy * w + ix,
        "cell": np.stack([iy, ix], axis=1),
        "offset": np.stack([cx - ix, cy - iy], axis=1).astype(np.float32),
        "size": np.log(np.stack([bw, bh], axis=1) / stride).astype(np.float32),
    }


def decode(
    heatmap_logits: np.ndarray, boxes: np.ndarray, score_threshold: float, max_detections: int, stride: int = STRIDE
) -> np.ndarray:
    """Detector outputs (1, 1, h, w) logits and (1, 4, h, w) box maps -> (N, 5) [x1, y1, x2, y2, score].

    Peaks are cells whose logit is the maximum of their 3x3 neighbourhood (CenterNet's max-pool in
    place of NMS; picked on logits, which do not saturate like float32 sigmoids); the `max_detections`
    best with sigmoid score >= `score_threshold` are kept, best first. Boxes are in network-input
    pixels, clipped to the input (h * stride, w * stride).
    """
    from scipy.ndimage import maximum_filter

    if heatmap_logits.ndim != 4 or heatmap_logits.shape[:2] != (1, 1):
        raise ValueError(f"heatmap must be (1, 1, h, w), got {heatmap_logits.shape}")
    if boxes.shape != (1, 4, *heatmap_logits.shape[2:]):
        raise ValueError(f"boxes must be (1, 4, {heatmap_logits.shape[2]}, {heatmap_logits.shape[3]}), got {boxes.shape}")
    logits = heatmap_logits[0, 0].astype(np.float64)
    h, w = logits.shape
    peak = (logits == maximum_filter(logits, size=3, mode="nearest")).ravel()
    scores = 1.0 / (1.0 + np.exp(-logits.ravel()))
    cand = np.flatnonzero(peak & (scores >= score_threshold))
    cand = cand[np.argsort(-scores[cand], kind="stable")][: max(0, max_detections)]
    iy, ix = np.divmod(cand, w)
    b = boxes[0].reshape(4, -1)[:, cand].astype(np.float64)
    cx, cy = (ix + b[0]) * stride, (iy + b[1]) * stride
    bw, bh = np.exp(np.minimum(b[2], 20.0)) * stride, np.exp(np.minimum(b[3], 20.0)) * stride
    out = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, scores[cand]], axis=1)
    out[:, 0:4:2] = out[:, 0:4:2].clip(0, w * stride)
    out[:, 1:4:2] = out[:, 1:4:2].clip(0, h * stride)
    return out.astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) x1y1x2y2 -> (N, M) intersection over union."""
    a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    return inter / np.maximum(union, 1e-12)


def average_precision(detections: list[np.ndarray], truths: list[np.ndarray], iou_threshold: float = 0.5) -> float:
    """Single-class AP over a set of images (all-point interpolated, as PASCAL VOC 2010+ and COCO's
    per-threshold AP): detections (N_i, 5) with scores are matched greedily, best first, to unmatched
    truths (K_i, 4) at IoU >= `iou_threshold`. Returns 0..1 (1.0 when there is no truth and no detection)."""
    total = sum(len(t) for t in truths)
    scored = []
    for dets, gt in zip(detections, truths, strict=True):
        dets = np.asarray(dets, np.float64).reshape(-1, 5)
        iou = box_iou(dets, gt) if len(gt) else np.zeros((len(dets), 0))
        free = np.ones(len(gt), bool)
        for d in np.argsort(-dets[:, 4], kind="stable"):
            overlap = np.where(free, iou[d], -1.0)
            j = int(np.argmax(overlap)) if len(gt) else -1
            hit = j >= 0 and overlap[j] >= iou_threshold
            if hit:
                free[j] = False
            scored.append((float(dets[d, 4]), hit))
    if total == 0:
        return 1.0 if not scored else 0.0
    scored.sort(key=lambda s: -s[0])
    hits = np.array([s[1] for s in scored], bool)
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = np.concatenate([[0.0], tp / total])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


@dataclass(frozen=True)
class DetectionFrames:
    """Synthetic frames at a network input size: RGB uint8 (N, H, W, 3) and per frame (K_i, 4) boxes
    in network-input pixels."""

    images: np.ndarray
    boxes: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.images)


def _sequence_config(seed: int, hd: bool, frames: int) -> SynthConfig:
    """Varied scenes: 1 to 14 objects, any crossing rate, sensor noise, panning; speeds high enough
    that a short clip spreads objects over the frame as a long video's frames do."""
    rng = np.random.default_rng(seed)
    width, height = (1280, 720) if hd else (640, 360)
    return SynthConfig(
        seed=seed,
        frames=frames,
        width=width,
        height=height,
        objects=int(rng.integers(1, 15)),
        speed=float(rng.uniform(0.012, 0.06) * width),
        occlusion=float(rng.uniform(0.2, 0.9)),
        noise=float(rng.choice([0.0, rng.uniform(1, 10)])),
        camera="pan" if rng.random() < 0.4 else "static",
    )


@lru_cache(maxsize=8)
def synthetic_frames(
    image_hw: tuple[int, int], first_seed: int, sequences: int, frames_per_sequence: int = 16, hd_share: float = 0.3
) -> DetectionFrames:
    """Frames of `sequences` short synthetic clips (seeds first_seed..), rendered at 640x360 or, for
    `hd_share` of them, 1280x720, resized to `image_hw` with INTER_AREA exactly as tracking resizes
    its frames. Cached per process: training and validation render them once."""
    images, boxes = [], []
    sy, sx = image_hw[0], image_hw[1]
    for s in range(sequences):
        seed = first_seed + s
        hd = np.random.default_rng([seed, 1]).random() < hd_share
        cfg = _sequence_config(seed, hd, frames_per_sequence)
        for frame, rows in render(cfg):
            images.append(network_image(frame, image_hw))
            boxes.append(scale_boxes(truth_boxes(rows), (cfg.height, cfg.width), (sy, sx)))
    if not images:
        return DetectionFrames(np.zeros((0, sy, sx, 3), np.uint8), ())
    return DetectionFrames(np.stack(images), tuple(boxes))
