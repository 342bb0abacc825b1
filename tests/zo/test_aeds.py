"""ZO-AE-DS per-sample estimates through a black-box session match analytic input gradients."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from tridesign.workflows.zo_aeds import BlackBox, per_sample_gradient


def _input_gradients(model, x, labels):
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    h = x @ w["fc1.weight"].T + w["fc1.bias"]
    z = np.maximum(h, 0) @ w["fc2.weight"].T + w["fc2.bias"]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), labels] -= 1.0
    return ((p @ w["fc2.weight"]) * (h > 0)) @ w["fc1.weight"]


def test_per_sample_cge_and_rge_through_the_black_box(mlp, data):
    x, y = data
    x, y = x[:8].astype(np.float64), y[:8]
    box = BlackBox(mlp.SerializeToString())
    truth = _input_gradients(mlp, x, y)
    rng = np.random.default_rng(0)
    cge = per_sample_gradient(box, x.astype(np.float32), y, "cge", q=16, mu=1e-2, rng=rng)
    np.testing.assert_allclose(cge, truth, atol=5e-2 * np.abs(truth).max())  # forward differences across ReLU kinks
    assert box.queries == 8 * (16 + 1)
    rge = per_sample_gradient(box, x.astype(np.float32), y, "rge", q=64, mu=1e-2, rng=rng)
    cos = np.sum(rge * truth, 1) / (np.linalg.norm(rge, axis=1) * np.linalg.norm(truth, axis=1))
    assert cos.mean() > 0.6
    few = per_sample_gradient(box, x.astype(np.float32), y, "rge", q=2, mu=1e-2, rng=rng)
    cos_few = np.sum(few * truth, 1) / (np.linalg.norm(few, axis=1) * np.linalg.norm(truth, axis=1))
    assert cos.mean() > cos_few.mean()  # more queries, better aligned estimate
