"""`make test-cross`: an aarch64 deployment bundle runs on its own runner under qemu-user.

`tridesign deploy resnet20 --target aarch64-generic` (TVM backend; with Debian's
g++-aarch64-linux-gnu installed the module is linked as tvm/module.so) is copied into the arm64
Debian root of scripts/cross_root.sh, which has python3, numpy and the aarch64 TVM runtime
(/opt/tvm-site) and neither tridesign, torch nor onnxruntime. There the bundle's own runner,
`python3 -m tridesign_board BUNDLE --engine tvm`, checks every file, loads the aarch64 module (its
TVM opener refuses unless `platform.machine()` is the module's arch, so `engine == "tvm"` means it
ran as aarch64), and compares the outputs with the bundle's reference (ONNX Runtime on this
machine) within the stated tolerance; the outputs it writes are compared here too. The same bundle
with one changed byte in model.onnx is refused in the root with exit 1 and one line.

Opt-in like tests/tvm/test_cross.py: marked `cross`, skipped unless TRIDESIGN_CROSS=1, the root
exists and this process may chroot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tridesign.compiler.options import CompileOptions
from tridesign.workflows.deploy import deploy

pytestmark = pytest.mark.cross

SITE = "/opt/tvm-site"  # tests/conftest.py CROSS_SITE: where the root has the aarch64 TVM runtime
BUNDLE = "resnet20-aarch64"


def run_in_root(root: Path, bundle_dir: str, *args: str) -> subprocess.CompletedProcess:
    """`python3 -m tridesign_board BUNDLE_DIR ARGS` inside the root, the bundle's runner on the path."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{SITE}:{bundle_dir}", "HOME": "/root"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    command = [chroot, str(root), "python3", "-m", "tridesign_board", bundle_dir, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def aarch64_bundle(arm_root, tmp_path_factory) -> Path:
    """ResNet-20 tiny bundled for aarch64-generic, as an unpacked folder on this machine."""
    out = tmp_path_factory.mktemp("cross-bundle") / BUNDLE
    meta = deploy("resnet20", CompileOptions(backend="tvm", target="aarch64-generic"), out, as_dir=True)
    assert meta["engines"] == ["tvm", "onnxruntime"], meta["engines"]
    assert meta["tvm"]["module"] == "module.so" and (out / "tvm" / "module.so").is_file(), (
        "the aarch64 module was not linked: is aarch64-linux-gnu-g++ installed? (scripts/cross_root.sh installs it)"
    )
    assert meta["tvm"]["device"] == "cpu" and meta["tvm"]["triple"].startswith("aarch64")
    return out


@pytest.fixture
def root_tmp(arm_root):
    """A fresh folder under the root's /tmp: (path here, the same path inside the root)."""
    work = Path(tempfile.mkdtemp(prefix="tridesign-cross-bundle-", dir=arm_root / "tmp"))
    try:
        yield work, "/" + str(work.relative_to(arm_root))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_aarch64_bundle_runs_on_its_own_runner_under_qemu(arm_root, aarch64_bundle, root_tmp) -> None:
    work, inside = root_tmp
    shutil.copytree(aarch64_bundle, work / BUNDLE)
    proc = run_in_root(
        arm_root, f"{inside}/{BUNDLE}", "--engine", "tvm", "--json", "--repeat", "3", "--warmup", "1",
        "-o", f"{inside}/outputs.npz",
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    report = json.loads(proc.stdout)
    assert report["engine"] == "tvm" and report["precision"] == "fp32", report
    assert report["passed"] is True, report
    assert report["target"] == "aarch64-generic" and report["latency_ms"]["repeat"] == 3

    meta = json.loads((aarch64_bundle / "bundle.json").read_text())
    tolerance = meta["tolerance"]["tvm"]
    assert tolerance == {"atol": 1e-4, "rtol": 1e-3}  # the rule `compile` verifies with (docs/deploy.md)
    with np.load(aarch64_bundle / "reference_outputs.npz", allow_pickle=False) as data:
        reference = {name: data[name] for name in data.files}
    with np.load(work / "outputs.npz", allow_pickle=False) as data:
        arm = {name: data[name] for name in data.files}
    assert set(arm) == set(reference) == {"logits"}
    (row,) = report["comparison"]
    assert row["output"] == "logits" and row["passed"]
    for name, ref in reference.items():
        ref = ref.astype(np.float64)
        allowed = tolerance["atol"] + tolerance["rtol"] * float(np.max(np.abs(ref)))
        max_abs = float(np.max(np.abs(arm[name].astype(np.float64) - ref)))
        assert arm[name].shape == ref.shape == (1, 10)
        assert max_abs <= allowed, f"{name}: max abs {max_abs:.3g} > {allowed:.3g}"
        assert row["max_abs_err"] == pytest.approx(max_abs, abs=1e-12) and row["allowed"] == pytest.approx(allowed)


def test_the_runner_in_the_root_refuses_a_changed_model(arm_root, aarch64_bundle, root_tmp) -> None:
    work, inside = root_tmp
    bad = work / BUNDLE
    shutil.copytree(aarch64_bundle, bad)
    data = (bad / "model.onnx").read_bytes()
    (bad / "model.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    proc = run_in_root(arm_root, f"{inside}/{BUNDLE}", "--engine", "tvm", "--json", "--repeat", "1", "--warmup", "0")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "model.onnx does not match its sha256" in lines[0], lines[0]
    assert proc.stdout == ""
