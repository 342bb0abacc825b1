"""The finetune loop: loss goes down, resume reproduces the uninterrupted run, no torch on device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, evaluate, finetune, load_data
from tridesign.errors import UsageError

CONFIG = FinetuneConfig(selector="fc2.*", queries=8, steps=60, lr=0.05, mu=1e-3, batch=64, checkpoint_every=10)


@pytest.mark.parametrize("estimator", ["rge", "cge"])
def test_zo_finetune_measurably_reduces_the_loss(mlp, data, estimator):
    x, y = data
    engine = OrtEngine(mlp, "fc2.*")
    before = evaluate(engine, {"input": x}, y)
    config = FinetuneConfig(**{**CONFIG.__dict__, "estimator": estimator, "queries": 8 if estimator == "rge" else 40})
    result = finetune(engine, {"input": x}, y, config)
    after = evaluate(engine, {"input": x}, y)
    assert after["loss"] < 0.8 * before["loss"]
    assert after["accuracy"] > before["accuracy"] + 0.1
    per_step = config.queries + 1
    assert result.queries == config.steps * per_step


def test_resume_after_interrupt_reproduces_the_uninterrupted_run(mlp, data, tmp_path):
    x, y = data
    config = FinetuneConfig(**{**CONFIG.__dict__, "steps": 30, "optimizer": "sgd", "momentum": 0.9})
    straight = finetune(OrtEngine(mlp, "fc2.*"), {"input": x}, y, config)
    ckpt = tmp_path / "run.ckpt.npz"
    first = finetune(OrtEngine(mlp, "fc2.*"), {"input": x}, y, config, checkpoint=ckpt, stop_after=17)
    assert len(first.losses) == 17 and ckpt.exists()
    resumed = finetune(OrtEngine(mlp, "fc2.*"), {"input": x}, y, config, checkpoint=ckpt)
    assert resumed.resumed_from == 10  # the last checkpoint before the interrupt
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    assert resumed.losses == straight.losses and resumed.queries == straight.queries
    other = FinetuneConfig(**{**config.__dict__, "lr": 0.5})
    with pytest.raises(UsageError, match="other settings"):
        finetune(OrtEngine(mlp, "fc2.*"), {"input": x}, y, other, checkpoint=ckpt)


def test_data_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "d.npz"
    np.savez(bad, x=np.zeros((2, 16), np.float32))
    with pytest.raises(UsageError, match="no labels"):
        load_data(bad, ["input"])
    np.savez(bad, x=np.zeros((2, 16), np.float32), y=np.zeros(2))
    inputs, labels = load_data(bad, ["input"])
    assert inputs["input"].shape == (2, 16) and labels.dtype == np.int64


def test_device_side_finetune_never_imports_torch(mlp, tmp_path):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp.SerializeToString())
    code = f"""
import sys, numpy as np, onnx
from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, finetune
from tridesign.deploy.zo import batched, feature_reuse, layerwise, optimizers, params, process_pool, prompts
from tridesign.zo import estimators
engine = OrtEngine(onnx.load({str(path)!r}), "fc2.*")
x = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
r = finetune(engine, {{"input": x}}, np.arange(32) % 4, FinetuneConfig(selector="fc2.*", queries=4, steps=2, batch=16))
assert r.queries == 10, r.queries
assert "torch" not in sys.modules, "torch was imported on the device side"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_sparse_cge_keeps_pruned_weights_at_zero_and_still_learns(mlp, data):
    from onnx import numpy_helper

    x, y = data
    weight = next(i for i in mlp.graph.initializer if i.name == "fc2.weight")
    w = numpy_helper.to_array(weight).copy()
    w[:, ::2] = 0.0  # half the weights pruned
    weight.CopyFrom(numpy_helper.from_array(w, "fc2.weight"))
    engine = OrtEngine(mlp, "fc2.*")
    pruned = engine.theta == 0
    before = evaluate(engine, {"input": x}, y)["loss"]
    config = FinetuneConfig(**{**CONFIG.__dict__, "estimator": "cge", "queries": 30, "sparse": True, "optimizer": "adam", "lr": 0.05})
    finetune(engine, {"input": x}, y, config)
    assert np.all(engine.theta[pruned[:128].nonzero()[0]] == 0)
    assert evaluate(engine, {"input": x}, y)["loss"] < 0.8 * before
    with pytest.raises(UsageError, match="--sparse needs"):
        finetune(engine, {"input": x}, y, FinetuneConfig(**{**CONFIG.__dict__, "sparse": True}))
