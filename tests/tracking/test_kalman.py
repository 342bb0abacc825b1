"""The constant-velocity Kalman filter: exact propagation of a known velocity, convergence to a
constant velocity from measurements, and growing uncertainty while it only predicts."""

from __future__ import annotations

import numpy as np

from tridesign.tracking import kalman


def test_predict_moves_by_velocity_exactly():
    mean, cov = kalman.initiate(np.array([10.0, 20.0, 50.0, 80.0]))
    mean[4:] = [3.0, -2.0, 0.5, 0.25]
    means, covs = mean[None], cov[None]
    for _ in range(7):
        means, covs = kalman.predict(means, covs)
    np.testing.assert_allclose(means[0, :4], [30 + 21, 50 - 14, 40 + 3.5, 60 + 1.75])
    np.testing.assert_allclose(means[0, 4:], [3.0, -2.0, 0.5, 0.25])
    assert np.all(np.diag(covs[0]) > np.diag(cov))


def test_batched_predict_matches_one_by_one():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 45, 25]], float)
    states = [kalman.initiate(b) for b in boxes]
    means, covs = kalman.predict(np.stack([m for m, _ in states]), np.stack([c for _, c in states]))
    for i, (m, c) in enumerate(states):
        one_mean, one_cov = kalman.predict(m[None], c[None])
        np.testing.assert_allclose(means[i], one_mean[0])
        np.testing.assert_allclose(covs[i], one_cov[0])


def test_learns_constant_velocity_and_extrapolates():
    velocity = np.array([4.0, -1.5, 4.0, -1.5])  # the box translates: both corners move alike
    box = np.array([100.0, 200.0, 140.0, 260.0])
    mean, cov = kalman.initiate(box)
    for _ in range(60):  # the velocity estimate converges geometrically: 0.4 % off after 30 frames
        box = box + velocity
        means, covs = kalman.predict(mean[None], cov[None])
        mean, cov = kalman.update(means[0], covs[0], box)
    np.testing.assert_allclose(mean[4:], [4.0, -1.5, 0.0, 0.0], atol=1e-3)
    means, covs = mean[None], cov[None]
    for _ in range(10):  # ten dropped frames
        means, covs = kalman.predict(means, covs)
    np.testing.assert_allclose(kalman.cxcywh_to_xyxy(means[0]), box + 10 * velocity, atol=0.05)


def test_update_pulls_towards_measurement_and_shrinks_uncertainty():
    mean, cov = kalman.initiate(np.array([0.0, 0.0, 20.0, 20.0]))
    means, covs = kalman.predict(mean[None], cov[None])
    new_mean, new_cov = kalman.update(means[0], covs[0], np.array([4.0, 0.0, 24.0, 20.0]))
    assert 10 < new_mean[0] < 14 and new_mean[4] > 0
    assert np.all(np.diag(new_cov) < np.diag(covs[0]))
    np.testing.assert_allclose(new_cov, new_cov.T, atol=1e-12)


def test_box_conversions_round_trip_and_clamp_size():
    box = np.array([1.0, 2.0, 11.0, 32.0])
    np.testing.assert_allclose(kalman.cxcywh_to_xyxy(kalman.xyxy_to_cxcywh(box)), box)
    np.testing.assert_allclose(kalman.cxcywh_to_xyxy(np.array([5.0, 5.0, -3.0, 0.2])), [4.5, 4.5, 5.5, 5.5])
