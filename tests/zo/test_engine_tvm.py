"""The TVM engine agrees with the ORT engine and drives the same finetune loop."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.engine_tvm import TvmEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, evaluate, finetune
from tridesign.errors import UsageError


def test_tvm_engine_matches_ort_and_finetunes(mlp, data):
    x, y = data
    tvm_engine, ort_engine = TvmEngine(mlp, "fc2.*", batch=64), OrtEngine(mlp, "fc2.*")
    assert tvm_engine.split.prefix is not None
    for e in (tvm_engine, ort_engine):
        e.set_batch({"input": x[:64]}, y[:64])
    assert tvm_engine.loss(tvm_engine.theta) == pytest.approx(ort_engine.loss(ort_engine.theta), rel=1e-5)
    thetas = tvm_engine.theta[None] + 0.1 * np.random.default_rng(0).standard_normal((3, tvm_engine.dim)).astype(np.float32)
    np.testing.assert_allclose(tvm_engine.loss_batched(thetas), ort_engine.loss_batched(thetas), rtol=1e-5)
    np.testing.assert_allclose(tvm_engine.predict({"input": x[:100]}), ort_engine.predict({"input": x[:100]}), rtol=1e-4, atol=1e-5)
    before = evaluate(tvm_engine, {"input": x}, y)["loss"]
    finetune(tvm_engine, {"input": x}, y, FinetuneConfig(selector="fc2.*", queries=8, steps=40, lr=0.05, mu=1e-3, batch=64))
    assert evaluate(tvm_engine, {"input": x}, y)["loss"] < 0.8 * before
    with pytest.raises(UsageError, match="compiled for batches of 64"):
        tvm_engine.set_batch({"input": x[:10]}, y[:10])


def test_tvm_engine_runs_where_torch_is_not_installed(mlp, tmp_path):
    """apache-tvm-ffi imports torch eagerly when it is installed; a device has none, so hide it."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp.SerializeToString())
    code = f"""
import sys
sys.modules["torch"] = None  # 'import torch' now raises ImportError, as on a device without torch
import numpy as np, onnx
from tridesign.deploy.zo.engine_tvm import TvmEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, finetune
engine = TvmEngine(onnx.load({str(path)!r}), "fc2.*", batch=16)
x = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
r = finetune(engine, {{"input": x}}, np.arange(32) % 4, FinetuneConfig(selector="fc2.*", queries=4, steps=2, batch=16))
assert r.queries == 10
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
