"""`tridesign finetune` end to end: a new artifact, the input untouched, errors as one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tridesign.cli.main import app
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_finetune_command_writes_a_new_artifact_and_leaves_the_input_alone(tmp_path, mlp, data):
    onnx_path = tmp_path / "mlp.onnx"
    onnx_path.write_bytes(mlp.SerializeToString())
    art = tmp_path / "art"
    compile_artifact(str(onnx_path), CompileOptions(), art)
    x, y = data
    np.savez(tmp_path / "data.npz", x=x, y=y)
    before = _digest(art)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(app, [
        "finetune", str(art), "--params", "fc2.*", "--data", str(tmp_path / "data.npz"), "--estimator", "rge",
        "--queries", "8", "--steps", "40", "--lr", "0.05", "-o", str(out), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["after"]["loss"] < 0.8 * report["before"]["loss"]
    assert report["queries"] == 40 * 9
    assert _digest(art) == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finetune"]["after"] == report["after"] and manifest["verification"]["passed"]
    assert manifest["source"]["kind"] == "zo-finetune"
    assert not list(tmp_path.glob("*.zo-ckpt.npz"))  # the checkpoint is gone once the artifact exists


def test_finetune_command_errors(tmp_path, mlp, data):
    onnx_path = tmp_path / "mlp.onnx"
    onnx_path.write_bytes(mlp.SerializeToString())
    x, y = data
    np.savez(tmp_path / "data.npz", x=x, y=y)
    runner = CliRunner()
    bad_params = runner.invoke(app, ["finetune", str(onnx_path), "--params", "conv*", "--data", str(tmp_path / "data.npz")])
    assert bad_params.exit_code != 0 and "matches no float parameter" in str(bad_params.exception)
    bad_est = runner.invoke(app, ["finetune", str(onnx_path), "--params", "fc2.*", "--estimator", "sge", "--data", str(tmp_path / "data.npz")])
    assert "unknown estimator" in str(bad_est.exception)


def test_bad_direction_is_a_usage_error(tmp_path, mlp, data):
    onnx_path = tmp_path / "mlp.onnx"
    onnx_path.write_bytes(mlp.SerializeToString())
    x, y = data
    np.savez(tmp_path / "data.npz", x=x, y=y)
    result = CliRunner().invoke(app, ["finetune", str(onnx_path), "--params", "fc2.*", "--direction", "uniform",
                                      "--data", str(tmp_path / "data.npz")])
    assert "unknown RGE direction" in str(result.exception)
