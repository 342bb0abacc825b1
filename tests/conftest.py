"""Shared fixtures: small ONNX files and compiled artifacts, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory):
    """Point the user cache (tuning databases, trained weights) at a fresh directory for the session.

    A developer's tuning records would otherwise change what `compile --backend tvm` builds. Trained
    weights (digits ResNet-20, the tracker's detector) are copied over when present, only to save
    the minutes of training.
    """
    real = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tridesign"
    cache = tmp_path_factory.mktemp("xdg-cache")
    for weights in [*real.glob("resnet20_digits_*.pt"), *real.glob("qdtrack_center_*.pt")]:
        (cache / "tridesign").mkdir(exist_ok=True)
        shutil.copy2(weights, cache / "tridesign" / weights.name)
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `tridesign ARGS` in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "tridesign", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, env=env
    )


@pytest.fixture
def cli():
    """Run `tridesign ARGS` in a subprocess: cli("compile", "resnet20", "-o", path)."""
    return run_cli


@pytest.fixture(scope="session")
def resnet20_onnx(tmp_path_factory) -> Path:
    from tridesign.compiler.export import export_model

    path = tmp_path_factory.mktemp("onnx") / "resnet20.onnx"
    export_model("resnet20", "tiny", path)
    return path


@pytest.fixture(scope="session")
def ort_artifact(tmp_path_factory) -> Path:
    from tridesign.compiler.options import CompileOptions
    from tridesign.compiler.pipeline import compile_artifact

    out = tmp_path_factory.mktemp("art") / "resnet20-ort"
    compile_artifact("resnet20", CompileOptions(backend="ort"), out)
    return out


def make_user_model(opset: int = 11) -> onnx.ModelProto:
    """Old-opset graph with names full of '/' and ':' and a constant subgraph (Add of two constants)."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "enc/w:0")
    c1 = numpy_helper.from_array(np.ones(3, dtype=np.float32), "c/one:0")
    c2 = numpy_helper.from_array(np.full(3, 2.0, dtype=np.float32), "c/two:0")
    nodes = [
        helper.make_node("Add", ["c/one:0", "c/two:0"], ["c/three:0"], name="fold/me:0"),
        helper.make_node("MatMul", ["in/x:0", "enc/w:0"], ["mm/out:0"], name="enc/matmul:0"),
        helper.make_node("Add", ["mm/out:0", "c/three:0"], ["out/y:0"], name="enc/add:0"),
    ]
    graph = helper.make_graph(
        nodes,
        "user",
        [helper.make_tensor_value_info("in/x:0", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("out/y:0", TensorProto.FLOAT, ["N", 3])],
        [w, c1, c2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture
def user_model():
    """Factory for a small user-style ONNX graph at a given opset."""
    return make_user_model


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0


# The arm64 Debian root of scripts/cross_root.sh, where `make test-cross` runs aarch64 builds under qemu.
CROSS_ROOT = Path(os.environ.get("TRIDESIGN_CROSS_ROOT", REPO / ".cross" / "arm64-root"))
CROSS_SITE = "/opt/tvm-site"  # the aarch64 TVM runtime and numpy, inside the root


@pytest.fixture(scope="session")
def arm_root() -> Path:
    """The arm64 root, or a skip saying why not (opt-in, not built, not root)."""
    if os.environ.get("TRIDESIGN_CROSS") != "1":
        pytest.skip("opt-in: run `make test-cross`")
    if not (CROSS_ROOT / ".debootstrap-done").exists() or not (CROSS_ROOT / CROSS_SITE.lstrip("/") / ".installed").exists():
        pytest.skip(f"no arm64 root at {CROSS_ROOT}: run `make test-cross` (scripts/cross_root.sh builds it)")
    if os.geteuid() != 0:
        pytest.skip("chroot into the arm64 root needs root")
    return CROSS_ROOT
