"""`make test-cross`: an aarch64 artifact built here runs under qemu-user in an arm64 Debian root.

The root (scripts/cross_root.sh: debootstrap bookworm arm64 + the aarch64 TVM runtime wheels) is
cached under .cross/; the test compiles ResNet-20 tiny for `aarch64-generic`, links it with
aarch64-linux-gnu-g++, runs it in the root with TVM's runtime only, and compares its logits with
the host build and with ONNX Runtime. Opt-in: marked `cross`, selected only by `make test-cross`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tridesign.compiler.options import CompileOptions

pytestmark = pytest.mark.cross

SITE = "/opt/tvm-site"  # tests/conftest.py CROSS_SITE: where the root has the aarch64 TVM runtime

# The device side needs only numpy and the TVM runtime: load the module, run the VM, save outputs.
RUNNER = """
import sys, platform, numpy as np, tvm
from tvm import relax
work = sys.argv[1]
assert platform.machine() == "aarch64", platform.machine()
lib = tvm.runtime.load_module(work + "/module.so")
vm = relax.VirtualMachine(lib, tvm.cpu())
x = np.load(work + "/input.npy")
np.save(work + "/output.npy", vm["main"](tvm.runtime.tensor(x)).numpy())
"""


def run_in_root(root: Path, *command: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": SITE, "HOME": "/root"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run([chroot, str(root), *command], env=env, capture_output=True, text=True, timeout=900)


def test_aarch64_artifact_matches_host_under_qemu(arm_root, tvm_backend, tvm_resnet20, resnet20_onnx, empty_db, tmp_path):
    out = tmp_path / "arm"
    out.mkdir()
    result = tvm_backend.compile(resnet20_onnx, out, CompileOptions(backend="tvm", target="aarch64-generic", tuning_db=empty_db))
    assert result.files[0] == "module.so", result.notes
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="tridesign-cross-", dir=arm_root / "tmp"))
    try:
        shutil.copy(out / "module.so", work / "module.so")
        np.save(work / "input.npy", x)
        (work / "run.py").write_text(RUNNER)
        inside = "/" + str(work.relative_to(arm_root))
        proc = run_in_root(arm_root, "python3", f"{inside}/run.py", inside)
        assert proc.returncode == 0, proc.stderr[-2000:]
        arm = np.load(work / "output.npy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    host = tvm_backend.load(tvm_resnet20[0]).run({"input": x})["logits"]
    want = ort.InferenceSession(str(resnet20_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    # Different ISA (NEON vs AVX-512 FMA, other vector widths): fp32 summation order differs.
    np.testing.assert_allclose(arm, host, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(arm, want, atol=1e-4, rtol=1e-4)
