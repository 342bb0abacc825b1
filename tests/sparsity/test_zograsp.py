"""ZO-GraSP: the ZO Hessian-gradient product, and per-layer ratios from the global ranking."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.compiler.sparsity import prune_torch
from tridesign.compiler.sparsity.zograsp import zo_hessian_gradient
from tridesign.sparsity_plan import load_plan


def test_zo_hessian_gradient_on_a_quadratic() -> None:
    # f = 0.5 theta^T A theta: g = A theta, H g = A A theta
    rng = np.random.default_rng(0)
    d = 6
    a = np.diag(np.arange(1.0, d + 1))
    theta = rng.standard_normal(d).astype(np.float32)
    loss = lambda t: float(0.5 * t.astype(np.float64) @ a @ t.astype(np.float64))  # noqa: E731
    hg = zo_hessian_gradient(loss, theta, q=4000, mu=1e-3)
    exact = a @ a @ theta
    cos = hg @ exact / (np.linalg.norm(hg) * np.linalg.norm(exact))
    assert cos > 0.9


def test_zograsp_prunes_to_target_with_layer_ratios(resnet, example) -> None:
    report = prune_torch(resnet, load_plan("zograsp:0.9"), example)
    assert report.real_sparsity == pytest.approx(0.9, abs=2e-3)
    ratios = [r.extra["zograsp_layer_sparsity"] for r in report.records.values()]
    assert len(set(np.round(ratios, 4))) > 3  # layer-wise, not uniform
    for rec in report.records.values():
        assert 1 - rec.density == pytest.approx(rec.extra["zograsp_layer_sparsity"], abs=1.0 / rec.mask.size + 1e-9)
