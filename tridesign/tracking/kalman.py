"""Constant-velocity Kalman filter on boxes, as SORT and ByteTrack use it.

State ``(cx, cy, w, h, vcx, vcy, vw, vh)``: box centre and size in frame pixels and their
velocities per frame; the measurement is ``(cx, cy, w, h)``. Width and height are filtered directly
(BoT-SORT's variant of ByteTrack's aspect-ratio state), so a box's two sides move independently
when an object enters the frame and its clipped box grows in one direction only. The noise is
proportional to the box size (ByteTrack's weights: 1/20 of the size for position, 1/160 for
velocity), which keeps the filter scale-free across small and large objects.

Written in numpy rather than taken from filterpy: the model is two fixed 8x8 matrices and
diagonal noise, all tracks predict in one batched call (the tracker predicts every track on
every frame, dropped frames included), and it adds no dependency to the device-side package.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
NDIM = 4

# x_{t+1} = F x_t: each coordinate moves by its velocity in one frame.
MOTION = np.eye(2 * NDIM)
MOTION[:NDIM, NDIM:] = np.eye(NDIM)
OBSERVE = np.eye(NDIM, 2 * NDIM)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, float)
    return np.concatenate([(box[..., :2] + box[..., 2:4]) / 2, box[..., 2:4] - box[..., :2]], axis=-1)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    """Boxes (..., 4) from the first four state entries; sizes are kept at least 1 pixel so that a
    long prediction of a shrinking box never turns it inside out."""
    centre, size = state[..., :2], np.maximum(state[..., 2:4], 1.0)
    return np.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def _size_std(wh: np.ndarray, weight: float) -> np.ndarray:
    """(..., 4) standard deviations (w, h, w, h) * weight for the (cx, cy, w, h) coordinates."""
    return weight * np.concatenate([wh, wh], axis=-1)


def initiate(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (8,) and covariance (8, 8) of a new track from its first (x1, y1, x2, y2) box: zero
    velocity, with a velocity uncertainty wide enough for the first match to set it."""
    measured = xyxy_to_cxcywh(box)
    wh = measured[2:4]
    std = np.concatenate([_size_std(wh, 2 * STD_POSITION), _size_std(wh, 10 * STD_VELOCITY)])
    return np.concatenate([measured, np.zeros(NDIM)]), np.diag(std**2)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for a batch of tracks: means (N, 8), covariances (N, 8, 8)."""
    wh = np.maximum(mean[:, 2:4], 1.0)
    std = np.concatenate([_size_std(wh, STD_POSITION), _size_std(wh, STD_VELOCITY)], axis=1)
    noise = np.zeros_like(cov)
    idx = np.arange(2 * NDIM)
    noise[:, idx, idx] = std**2
    return mean @ MOTION.T, MOTION @ cov @ MOTION.T + noise


def update(mean: np.ndarray, cov: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct one track's (8,) mean and (8, 8) covariance with a measured (x1, y1, x2, y2) box."""
    measured = xyxy_to_cxcywh(box)
    r = _size_std(np.maximum(mean[2:4], 1.0), STD_POSITION) ** 2
    projected_cov = OBSERVE @ cov @ OBSERVE.T + np.diag(r)
    gain = np.linalg.solve(projected_cov, OBSERVE @ cov).T  # cov H^T S^-1, S symmetric
    new_mean = mean + gain @ (measured - OBSERVE @ mean)
    new_cov = cov - gain @ projected_cov @ gain.T
    return new_mean, new_cov
