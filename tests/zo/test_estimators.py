"""RGE/CGE against analytic gradients: bias and variance behave as theory says."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.zo.estimators import CGEConfig, RGEConfig, cge, coordinate_subset, direction, rge
from tridesign.errors import UsageError

D = 8


def _quadratic(seed: int = 0):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((D, D))
    a = m @ m.T / D + np.eye(D)
    b = rng.standard_normal(D)

    def f(theta: np.ndarray) -> float:
        return float(0.5 * theta @ a @ theta + b @ theta)

    def grad(theta: np.ndarray) -> np.ndarray:
        return a @ theta + b

    return f, grad


def _quartic(theta: np.ndarray) -> float:
    return float(np.sum(theta**4) / 4.0)


def _estimates(f, theta, config, n):
    return np.stack([rge(f, theta, config, seed=s).dense() for s in range(n)])


@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_rge_is_unbiased_on_a_quadratic(kind):
    f, grad = _quadratic()
    theta = np.linspace(-1, 1, D)
    est = _estimates(f, theta, RGEConfig(q=4, mu=1e-3, direction=kind), 3000)
    stderr = est.std(axis=0) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - grad(theta)) < 4.5 * stderr)
    # and the estimate is not trivially the gradient itself (it is noisy)
    assert est.std(axis=0).min() > 0.1


def test_rge_variance_falls_as_one_over_q():
    f, grad = _quadratic()
    theta = np.linspace(-1, 1, D)
    err = {q: np.mean(np.sum((_estimates(f, theta, RGEConfig(q=q, mu=1e-3), 600) - grad(theta)) ** 2, 1)) for q in (4, 16)}
    assert 3.0 < err[4] / err[16] < 5.3


def test_forward_variance_grows_with_mu_central_does_not_on_a_quadratic():
    f, grad = _quadratic()
    theta = np.linspace(-1, 1, D)

    def mse(config):
        return np.mean(np.sum((_estimates(f, theta, config, 400) - grad(theta)) ** 2, 1))

    fwd_small, fwd_big = mse(RGEConfig(q=4, mu=1e-3)), mse(RGEConfig(q=4, mu=1.0))
    cen_small, cen_big = (mse(RGEConfig(q=4, mu=m, difference="central")) for m in (1e-3, 1.0))
    assert fwd_big > 1.3 * fwd_small
    assert cen_big == pytest.approx(cen_small, rel=1e-6)


def test_rge_estimates_the_smoothed_gradient_with_mu_squared_bias_on_a_quartic():
    # For f = Σθ⁴/4 and Gaussian smoothing, ∇f_μ = θ³ + 3μ²θ exactly (Stein's identity).
    theta = np.array([0.5, -1.0, 1.5, 0.2])
    mu = 0.3
    est = np.stack([rge(_quartic, theta, RGEConfig(q=8, mu=mu, difference="central"), s).dense() for s in range(2000)])
    stderr = est.std(axis=0) / np.sqrt(len(est))
    smoothed = theta**3 + 3 * mu**2 * theta
    assert np.all(np.abs(est.mean(axis=0) - smoothed) < 4.5 * stderr)
    # the bias w.r.t. the true gradient is real and detectable at this μ
    assert np.abs(est.mean(axis=0) - theta**3)[2] > 6 * stderr[2]


def test_cge_central_is_exact_on_a_quadratic_over_the_subset():
    f, grad = _quadratic()
    theta = np.linspace(-1, 1, D)
    coords = np.array([1, 4, 6])
    g = cge(f, theta, coords, CGEConfig(mu=1e-2, difference="central")).dense()
    np.testing.assert_allclose(g[coords], grad(theta)[coords], rtol=1e-7, atol=1e-9)
    assert np.all(np.delete(g, coords) == 0)


def test_cge_bias_orders_on_a_quartic():
    theta = np.array([0.5, -1.0, 1.5, 0.2])
    coords = np.arange(4)
    for mu in (0.1, 0.05):
        central = cge(_quartic, theta, coords, CGEConfig(mu=mu, difference="central")).dense()
        np.testing.assert_allclose(central, theta**3 + mu**2 * theta, rtol=1e-9)
    err = [np.abs(cge(_quartic, theta, coords, CGEConfig(mu=m)).dense() - theta**3).max() for m in (0.1, 0.05)]
    assert 1.7 < err[0] / err[1] < 2.3  # forward difference: bias O(μ)


def test_batched_path_matches_in_place_path_and_restores_theta():
    f, _ = _quadratic()
    theta = np.linspace(-1, 1, D)
    before = theta.copy()

    def batched(thetas: np.ndarray) -> np.ndarray:
        return np.array([f(t) for t in thetas])

    for config in (RGEConfig(q=5, direction="sphere"), RGEConfig(q=5, difference="central")):
        a = rge(f, theta, config, seed=7)
        b = rge(None, theta, config, seed=7, batched=batched, chunk=3)
        np.testing.assert_allclose(a.dense(), b.dense(), rtol=1e-6)
        assert a.queries == b.queries == config.queries()
    c1 = cge(f, theta, np.arange(D), CGEConfig())
    c2 = cge(None, theta, np.arange(D), CGEConfig(), batched=batched, chunk=5)
    np.testing.assert_allclose(c1.dense(), c2.dense(), rtol=1e-6)
    assert c1.queries == D + 1
    np.testing.assert_allclose(theta, before, atol=1e-12)


def test_directions_are_regenerated_from_seeds():
    np.testing.assert_array_equal(direction(3, 1, 50, "gaussian"), direction(3, 1, 50, "gaussian"))
    assert not np.allclose(direction(3, 1, 50, "gaussian"), direction(3, 2, 50, "gaussian"))
    assert np.linalg.norm(direction(0, 0, 50, "sphere", np.float64)) == pytest.approx(1.0)


def test_coordinate_subset_respects_ratios_and_masks():
    masks = [np.array([1, 0, 1, 0, 1, 0]), np.ones(4)]
    coords = coordinate_subset([6, 4], [1.0, 0.5], seed=0, masks=masks)
    assert set(coords[coords < 6]) == {0, 2, 4}
    assert len(coords[coords >= 6]) == 2
    with pytest.raises(UsageError):
        coordinate_subset([6], [1.5], seed=0)


def test_bad_configs_are_usage_errors():
    with pytest.raises(UsageError):
        RGEConfig(q=0)
    with pytest.raises(UsageError):
        RGEConfig(mu=-1)
    with pytest.raises(UsageError):
        CGEConfig(difference="backward")
