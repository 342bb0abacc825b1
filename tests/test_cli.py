"""End-to-end: the `tridesign` command run in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_compile_profile_run_round_trip(tmp_path, cli):
    art = tmp_path / "art"
    done = cli("compile", "resnet20", "--backend", "ort", "-o", str(art), "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["verification"]["passed"]

    prof = cli("profile", str(art), "--repeat", "5", "--warmup", "1", "--json")
    assert prof.returncode == 0, prof.stderr
    report = json.loads(prof.stdout)
    assert report["latency_ms"]["median"] > 0 and report["parameters"] > 60_000

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    ran = cli("run", str(art), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))
    assert ran.returncode == 0, ran.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert out["logits"].shape == (2, 10)


def test_export_verifies_against_torch(tmp_path, cli):
    done = cli("export", "resnet20", "-o", str(tmp_path / "r.onnx"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and report["max_abs_err"] <= report["atol"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["compile", "no_such_model", "-o", "{tmp}/o"], 2, "unknown model 'no_such_model'"),
        (["compile", "{tmp}/missing.onnx", "-o", "{tmp}/o"], 1, "no such file"),
        (["compile", "{tmp}/junk.onnx", "-o", "{tmp}/o"], 1, "not a readable ONNX model"),
        (["compile", "resnet20", "--backend", "nope", "-o", "{tmp}/o"], 2, "unknown backend 'nope'"),
        (["compile", "resnet20", "-o", "/proc/definitely/not/here"], 1, "does not exist"),
        (["compile", "resnet20", "-o", "{tmp}/junk.onnx/art"], 1, "is not a directory"),
        (["profile", "{tmp}"], 1, "not a tridesign artifact"),
        (["compile", "resnet20", "--tune", "many", "-o", "{tmp}/o"], 2, "Invalid value"),
        (["run", "{tmp}", "--input", "{tmp}/none.npz", "-o", "{tmp}/x.npz"], 1, "no such file"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_code(tmp_path, cli, args, code, message):
    (tmp_path / "junk.onnx").write_text("this is not protobuf")
    done = cli(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_unwritable_output_directory(tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        done = cli("compile", "resnet20", "-o", str(locked / "art"))
        if done.returncode == 0:  # root ignores permission bits
            pytest.skip("running as root: directory permissions are not enforced")
        assert done.returncode == 1 and "not writable" in done.stderr
    finally:
        locked.chmod(0o700)


def test_interrupt_leaves_no_half_written_artifact(tmp_path):
    out = tmp_path / "art"
    # SIGINT back to its default in the child: a suite started as a background job (`make test &`)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "tridesign", "compile", "resnet20", "--config", "paper", "--backend", "tvm", "-o", str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupt once the backend has started compiling (the reference run is the step before).
    deadline = time.time() + 120
    for line in proc.stderr:
        if "reference run" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


def test_compile_says_which_config_it_built_when_none_was_asked_for(tmp_path, cli):
    done = cli("compile", "resnet20", "-o", str(tmp_path / "a"), "--json")
    assert done.returncode == 0, done.stderr
    assert "building the tiny config of resnet20 (--config paper for the published size)" in done.stderr
    assert json.loads(done.stdout)["source"]["config"] == "tiny"
    done = cli("compile", "resnet20", "--config", "tiny", "-o", str(tmp_path / "b"))
    assert done.returncode == 0 and "tiny config" not in done.stderr
