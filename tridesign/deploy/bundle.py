"""Deployment bundles: an artifact packed with everything a board needs, checksummed, and run.

A bundle holds the verified ONNX (QDQ where int8), the reference inputs and outputs, the compiled
TVM module for the target where there is one, the board runner (`tridesign_board`, a verbatim copy
of tridesign/board: standard library, numpy and the runtimes only), a README for the person at the
board, and `bundle.json`: format, creation time, versions, target, the engines to try in order
with their settings, inputs and outputs with shapes, dtypes and tolerances, and the size and
sha256 of every file. It is written as `NAME.tar.gz` (or a folder), atomically.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from jinja2 import Environment, PackageLoader

import tridesign.board
from tridesign import __version__
from tridesign.artifact import INPUTS_FILE, MODEL_FILE, REFERENCE_FILE, TVM_IO_FILE, Manifest, load_manifest
from tridesign.atomic import atomic_dir, atomic_file, check_writable_parent
from tridesign.board.check import BUNDLE_FILE, FORMAT, BoardError, extract, sha256_file
from tridesign.board.runner import run_bundle
from tridesign.errors import TridesignError
from tridesign.targets import get_target
from tridesign.verification import VERIFY_ATOL, VERIFY_RTOL, output_steps

RUNNER_PACKAGE = "tridesign_board"
TVM_DIR = "tvm"
# FP16 keeps ~3 significant digits: Polygraphy's users compare FP16 engines at about 1e-2.
TENSORRT_TOLERANCE = {"atol": 1e-2, "rtol": 1e-2}
TENSORRT_SETTINGS = {"opt_level": 3, "workspace_mib": 1024}


def engines_for(manifest: Manifest) -> list[str]:
    """The engines a board tries, best first: TensorRT where the target has an NVIDIA GPU, the
    compiled TVM module where the artifact has one, ONNX Runtime always."""
    spec = get_target(manifest.target.name)
    order = ["tensorrt"] if spec.device is not None and spec.device.get("kind") == "cuda" else []
    if manifest.backend == "tvm":
        order.append("tvm")
    return [*order, "onnxruntime"]


def bundle_meta(manifest: Manifest, sparse_2to4: bool, steps: dict[str, float] | None = None) -> dict[str, Any]:
    """bundle.json without its file table; `steps`: an int8 model's quantization step per output,
    which the board may differ by on top of the fp32 rule, as `compile` verified it."""
    spec = get_target(manifest.target.name)
    engines = engines_for(manifest)
    int8 = manifest.quantization is not None
    exact = {"atol": VERIFY_ATOL, "rtol": VERIFY_RTOL, **({"steps": steps} if int8 and steps else {})}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": getattr(manifest.source, "model", None) or Path(getattr(manifest.source, "path", "model")).stem,
        "versions": {**manifest.versions, "tridesign": __version__},
        "target": {"name": spec.name, "description": spec.description, "host": spec.host, "device": spec.device},
        "engines": engines,
        "model": MODEL_FILE,
        "int8": int8,
        "reference": {"inputs": INPUTS_FILE, "outputs": REFERENCE_FILE},
        "inputs": [t.model_dump() for t in manifest.inputs],
        "outputs": [t.model_dump() for t in manifest.outputs],
        "tolerance": {e: (TENSORRT_TOLERANCE if e == "tensorrt" else exact) for e in engines},
    }
    if "tvm" in engines:
        module = next(f for f in manifest.files if f.startswith("module."))
        device = "cuda" if spec.device is not None else "cpu"
        meta["tvm"] = {"dir": TVM_DIR, "module": module, "device": device, "triple": spec.host["mtriple"]}
    if "tensorrt" in engines:
        from tridesign.board import trt

        batch = int(manifest.options.get("batch", 1))
        shapes = {t.name: [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(t.shape)] for t in manifest.inputs}
        settings = {"fp16": True, "int8": int8, "sparse_weights": sparse_2to4, "shapes": shapes, **TENSORRT_SETTINGS}
        command = trt.trtexec_command(
            MODEL_FILE, "model.engine", fp16=True, int8=int8, sparse_weights=sparse_2to4, timing_cache="timing.cache",
            opt_level=settings["opt_level"], workspace_mib=settings["workspace_mib"], shapes=shapes,
        )
        meta["tensorrt"] = {**settings, "trtexec": command}
    return meta


def pack(artifact_dir: Path, out: Path, as_dir: bool = False, sparse_2to4: bool = False) -> dict[str, Any]:
    """Write the bundle of a compiled artifact to `out` (a .tar.gz, or a folder with `as_dir`);
    `sparse_2to4`: enable TensorRT's sparse weights (the model has 2:4 weights in its layout)."""
    artifact_dir, out = Path(artifact_dir), Path(out)
    manifest = load_manifest(artifact_dir)
    check_writable_parent(out)
    steps = output_steps(onnx.load(str(artifact_dir / MODEL_FILE), load_external_data=False)) if manifest.quantization else None
    meta = bundle_meta(manifest, sparse_2to4, steps)
    with tempfile.TemporaryDirectory(dir=out.resolve().parent, prefix=f".{out.name}.") as scratch:
        root = Path(scratch) / bundle_name(out)
        root.mkdir()
        for name in (MODEL_FILE, INPUTS_FILE, REFERENCE_FILE):
            shutil.copy2(artifact_dir / name, root / name)
        if "tvm" in meta:
            (root / TVM_DIR).mkdir()
            for name in (meta["tvm"]["module"], TVM_IO_FILE):
                shutil.copy2(artifact_dir / name, root / TVM_DIR / name)
        board = Path(tridesign.board.__file__).parent
        shutil.copytree(board, root / RUNNER_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        readme = Environment(loader=PackageLoader("tridesign", "templates"), keep_trailing_newline=True)
        (root / "README.md").write_text(readme.get_template("bundle_readme.md.j2").render(
            meta=meta, archive_name=f"{root.name}.tar.gz", bundle_dir_name=root.name,
        ))
        meta["files"] = {
            str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file()
        }
        (root / BUNDLE_FILE).write_text(json.dumps(meta, indent=2))
        if as_dir:
            with atomic_dir(out, BUNDLE_FILE) as tmp:
                shutil.copytree(root, tmp, dirs_exist_ok=True)
        else:
            with atomic_file(out) as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
                for path in sorted(root.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return meta


def bundle_name(out: Path) -> str:
    """The folder name a bundle unpacks to: the output's name without .tar.gz."""
    return out.name.removesuffix(".tar.gz").removesuffix(".tgz")


def is_bundle(path: Path) -> bool:
    path = Path(path)
    return (path / BUNDLE_FILE).is_file() or (path.is_file() and path.name.endswith((".tar.gz", ".tgz")))


def run(
    path: Path, inputs: dict[str, np.ndarray] | None = None, engine: str = "auto", repeat: int = 50, warmup: int = 5
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`tridesign run BUNDLE`: check, run and compare a bundle here, with the board's own runner.

    A folder runs where it is; an archive is unpacked member by member into a temporary folder that
    is removed afterwards (nothing is written outside it). The runner checks every file's sha256
    before it loads anything, so the files are hashed once per run.
    """
    path = Path(path)
    engine_dir = path.with_name(f"{bundle_name(path)}.engines")
    try:
        with contextlib.ExitStack() as stack:
            root = path
            if not path.is_dir():
                if not path.is_file():
                    raise TridesignError(f"{path}: no such file")
                root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tridesign-bundle-"))) / bundle_name(path)
                root.mkdir()
                extract(path, root)
            report, outputs = run_bundle(root, inputs, engine, repeat, warmup, engine_dir)
    except BoardError as err:
        raise TridesignError(str(err)) from None
    report["bundle"] = str(path)
    return report, outputs
