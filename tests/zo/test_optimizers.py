"""ZO-SGD and ZO-Adam drive a quadratic down; the seed-only SGD path equals the dense update."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.zo.estimators import RGEConfig, rge
from tridesign.deploy.zo.optimizers import ZOAdam, ZOSGD, make_optimizer
from tridesign.errors import UsageError


def _f(theta: np.ndarray) -> float:
    scales = np.linspace(0.5, 2.0, theta.size)
    return float(0.5 * np.sum(scales * (theta - 1.0) ** 2))


@pytest.mark.parametrize("opt", [ZOSGD(lr=0.02), ZOSGD(lr=0.01, momentum=0.9), ZOAdam(lr=0.05)])
def test_optimizers_reduce_a_quadratic(opt):
    theta = np.zeros(20)
    start = _f(theta)
    for step in range(300):
        opt.step(theta, rge(_f, theta, RGEConfig(q=4, mu=1e-3), seed=step))
    assert _f(theta) < 0.05 * start
    assert opt.step_count == 300


def test_seed_only_sgd_step_equals_the_dense_update():
    theta = np.linspace(-1, 1, 30)
    g = rge(_f, theta, RGEConfig(q=3), seed=11)
    expected = theta - 0.1 * g.dense()
    ZOSGD(lr=0.1).step(theta, g)
    np.testing.assert_allclose(theta, expected, rtol=1e-12)


def test_state_round_trip_continues_identically():
    a, b = ZOAdam(lr=0.05), ZOAdam(lr=0.05)
    ta, tb = np.zeros(10), np.zeros(10)
    for step in range(5):
        a.step(ta, rge(_f, ta, RGEConfig(q=2), seed=step))
    b.load_state_dict(a.state_dict())
    tb[:] = ta
    for step in range(5, 10):
        a.step(ta, rge(_f, ta, RGEConfig(q=2), seed=step))
        b.step(tb, rge(_f, tb, RGEConfig(q=2), seed=step))
    np.testing.assert_array_equal(ta, tb)


def test_bad_optimizer_settings_are_usage_errors():
    with pytest.raises(UsageError):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(UsageError):
        ZOSGD(lr=0.0)
