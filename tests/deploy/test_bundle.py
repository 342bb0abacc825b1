"""Deployment bundles: what they hold, the round trip on this machine (ONNX Runtime and the TVM
runtime), the board runner standing alone, a Jetson bundle run here, and every way a bundle can
be tampered with refused before anything in it is loaded."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tridesign.board.check import BUNDLE_FILE
from tridesign.compiler.options import CompileOptions
from tridesign.deploy import bundle
from tridesign.errors import TridesignError
from tridesign.workflows.deploy import deploy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ort_bundle(ort_artifact, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "resnet20-host.tar.gz"
    deploy(str(ort_artifact), CompileOptions(), out)
    return out


def test_a_bundle_lists_every_file_with_its_checksum(ort_bundle, tmp_path) -> None:
    with tarfile.open(ort_bundle) as tar:
        names = set(tar.getnames())
        meta = json.loads(tar.extractfile(BUNDLE_FILE).read())
    assert set(meta["files"]) | {BUNDLE_FILE} == names
    assert {"model.onnx", "inputs.npz", "reference_outputs.npz", "README.md", "tridesign_board/__main__.py"} <= names
    assert meta["engines"] == ["onnxruntime"] and meta["target"]["name"] == "host"
    assert meta["inputs"][0]["name"] == "input" and meta["tolerance"]["onnxruntime"] == {"atol": 1e-4, "rtol": 1e-3}
    readme = tarfile.open(ort_bundle).extractfile("README.md").read().decode()
    assert "python3 -m tridesign_board resnet20-host" in readme and "torch" in readme


def test_host_round_trip_on_onnx_runtime(ort_bundle) -> None:
    report, outputs = bundle.run(ort_bundle, repeat=3, warmup=1)
    assert report["engine"] == "onnxruntime" and report["passed"]
    assert report["comparison"][0]["max_abs_err"] <= report["comparison"][0]["allowed"]
    assert outputs["logits"].shape == (1, 10) and report["latency_ms"]["median"] > 0


def test_an_int8_bundle_allows_one_quantization_step_per_output(tmp_path) -> None:
    from tridesign.board.runner import compare

    meta = deploy("resnet20", CompileOptions(quantize="int8"), tmp_path / "int8", as_dir=True)
    step = meta["tolerance"]["onnxruntime"]["steps"]["logits"]
    assert meta["int8"] and step > 0
    report, _ = bundle.run(tmp_path / "int8", repeat=2, warmup=1)
    assert report["passed"] and report["comparison"][0]["step"] == step
    reference = {"logits": np.zeros((1, 10))}
    tolerance = meta["tolerance"]["onnxruntime"]
    assert compare({"logits": reference["logits"] + 0.9 * step}, reference, tolerance)[0]["passed"]
    assert not compare({"logits": reference["logits"] + step + 2 * tolerance["atol"]}, reference, tolerance)[0]["passed"]


def test_host_round_trip_on_the_tvm_runtime(tmp_path) -> None:
    out = tmp_path / "tvm-bundle"
    meta = deploy("resnet20", CompileOptions(backend="tvm"), out, as_dir=True)
    assert meta["engines"] == ["tvm", "onnxruntime"] and (out / "tvm" / "module.so").is_file()
    report, _ = bundle.run(out, repeat=3, warmup=1)
    assert report["engine"] == "tvm" and report["passed"], report


def test_a_jetson_bundle_carries_its_module_and_tensorrt_settings_and_runs_here_on_the_fallback(tmp_path) -> None:
    out = tmp_path / "orin.tar.gz"
    meta = deploy("resnet20", CompileOptions(backend="tvm", target="jetson-orin-nano"), out)
    assert meta["engines"] == ["tensorrt", "tvm", "onnxruntime"]
    assert meta["tvm"]["device"] == "cuda" and meta["tvm"]["triple"].startswith("aarch64")
    assert meta["tensorrt"]["fp16"] and not meta["tensorrt"]["int8"]
    assert meta["tensorrt"]["trtexec"].startswith("trtexec") and "--fp16" in meta["tensorrt"]["trtexec"]
    report, _ = bundle.run(out, repeat=2, warmup=0)
    assert report["engine"] == "onnxruntime" and report["passed"]
    assert any(n.startswith("tensorrt not used") for n in report["notes"])
    assert any(n.startswith("tvm not used") and "aarch64" in n for n in report["notes"])


def test_the_board_runner_needs_neither_tridesign_nor_torch(ort_bundle, tmp_path) -> None:
    with tarfile.open(ort_bundle) as tar:
        tar.extractall(tmp_path / "resnet20-host", filter="data")
    code = (
        "import runpy, sys; sys.argv = ['tridesign_board', 'resnet20-host', '--json', '--repeat', '2'];"
        "sys.path.insert(0, 'resnet20-host');"
        "\ntry:\n    runpy.run_module('tridesign_board', run_name='__main__')\n"
        "except SystemExit as done:\n    assert done.code == 0, done.code\n"
        "assert not [m for m in sys.modules if m == 'tridesign' or m.startswith(('tridesign.', 'torch'))], 'imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"]


def _rewrite(src: Path, dest: Path, edit) -> Path:
    """Copy a bundle archive member by member, letting `edit(name, data)` change, drop (None) or
    keep them, and add members it returns under the key None."""
    with tarfile.open(src) as tar, tarfile.open(dest, "w:gz") as new:
        for member in tar.getmembers():
            data = edit(member.name, tar.extractfile(member).read())
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return dest


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _flip(name: str, data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1]) if name == "model.onnx" else data


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda src, d: _rewrite(src, d, _flip), "model.onnx does not match its sha256"),
        (lambda src, d: _rewrite(src, d, lambda n, b: None if n == BUNDLE_FILE else b), "no bundle.json"),
        (lambda src, d: _rewrite(src, d, lambda n, b: None if n == "inputs.npz" else b), "inputs.npz is missing"),
        (lambda src, d: _write(d, src.read_bytes()[: len(src.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda src, d: _write(d, b"not a tar at all"), "not a readable bundle archive"),
    ],
    ids=["changed-file", "no-manifest", "missing-file", "truncated", "not-an-archive"],
)
def test_a_tampered_bundle_is_refused_with_one_line(ort_bundle, tmp_path, make, message) -> None:
    bad = make(ort_bundle, tmp_path / "bad.tar.gz")
    with pytest.raises(TridesignError, match=message) as raised:
        bundle.run(bad, repeat=1, warmup=0)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz"]


@pytest.mark.parametrize("kind", ["../escape.txt", "/etc/evil", "symlink", "unlisted"])
def test_members_outside_the_bundle_or_outside_its_list_are_refused(ort_bundle, tmp_path, tmp_path_factory, monkeypatch, kind) -> None:
    # The archive is unpacked under the temporary folder: point it at one this test can inspect.
    scratch = tmp_path_factory.mktemp("scratch")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(ort_bundle) as tar, tarfile.open(bad, "w:gz") as new:
        for member in tar.getmembers():
            new.addfile(member, tar.extractfile(member))
        if kind == "symlink":
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            new.addfile(info)
        else:
            info = tarfile.TarInfo("extra.txt" if kind == "unlisted" else kind)
            info.size = 2
            new.addfile(info, io.BytesIO(b"hi"))
    expected = {"symlink": "link or device", "unlisted": "not listed in bundle.json"}.get(kind, "points outside the bundle")
    with pytest.raises(TridesignError, match=expected):
        bundle.run(bad, repeat=1, warmup=0)
    assert not (tmp_path.parent / "escape.txt").exists() and sorted(os.listdir(tmp_path)) == ["bad.tar.gz"]
    assert not list(scratch.rglob("*")), "something was written beside the temporary bundle folder"


def test_an_unpacked_bundle_with_a_changed_or_extra_file_is_refused(ort_bundle, tmp_path) -> None:
    root = tmp_path / "b"
    with tarfile.open(ort_bundle) as tar:
        tar.extractall(root, filter="data")
    (root / "stray.py").write_text("print('hi')")
    with pytest.raises(TridesignError, match="stray.py is not listed"):
        bundle.run(root, repeat=1, warmup=0)
    (root / "stray.py").unlink()
    np.savez(root / "inputs.npz", input=np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(TridesignError, match="inputs.npz has .* bytes|inputs.npz does not match"):
        bundle.run(root, repeat=1, warmup=0)


def test_cli_deploy_and_run(tmp_path, cli) -> None:
    out = tmp_path / "r.tar.gz"
    done = cli("deploy", "resnet20", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["engines"] == ["onnxruntime"]
    done = cli("run", str(out), "--json", "--repeat", "3", "-o", str(tmp_path / "y.npz"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"] and np.load(tmp_path / "y.npz")["logits"].shape == (1, 10)
    out.write_bytes(out.read_bytes()[:100])
    done = cli("run", str(out))
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = cli("deploy", "resnet20", "--target", "jetson-orin-nano", "--backend", "ort", "-o", str(tmp_path / "j.tar.gz"))
    assert done.returncode == 1 and "the ort backend compiles for the host only" in done.stderr
    assert not (tmp_path / "j.tar.gz").exists()
