"""Per-layer feature reuse gives the same CGE estimate as re-running the whole suffix."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.zo.estimators import CGEConfig, cge
from tridesign.deploy.zo.layerwise import LayerwiseCGE


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_layerwise_cge_equals_plain_cge(mlp, data, difference):
    x, y = data
    engine = OrtEngine(mlp, "fc1.*,fc2.*")
    engine.set_batch({"input": x[:64]}, y[:64])
    layerwise = LayerwiseCGE(engine)
    fc2 = next(s for p, s in zip(engine.params, layerwise.splits) if p.name == "fc2.weight")
    assert [n.op_type for n in fc2.suffix.graph.node] == ["Gemm"]  # fc2's coordinates skip fc1 and relu
    coords = np.array([0, 5, 100, 520, 600, engine.dim - 1])
    config = CGEConfig(mu=1e-2, difference=difference)
    before = engine.theta.copy()
    fast = layerwise.estimate(coords, config)
    slow = cge(engine.loss, engine.theta, coords, config)
    np.testing.assert_allclose(fast.coeffs, slow.coeffs, rtol=1e-4, atol=1e-5)
    assert fast.queries == slow.queries
    np.testing.assert_array_equal(engine.theta, before)
