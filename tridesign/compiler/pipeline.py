"""The compile pipeline: source -> verified ONNX -> backend artifact -> verification -> manifest.

SOURCE is a registered model (built in torch, exported and verified against torch) or any ONNX file
a user brings (normalized: opset upgrade, constant folding, shape inference). The artifact is
built in a temporary directory and renamed into place only once the backend's outputs match ONNX
Runtime on the compiled graph, so a directory on disk is always complete and verified.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tridesign import __version__
from tridesign.atomic import MANIFEST, atomic_dir, check_writable_parent
from tridesign.compiler import onnx_io, passes
from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.backends import get_backend
from tridesign.compiler.export import compare_outputs, export_verified, run_onnxruntime
from tridesign.compiler.options import CompileOptions
from tridesign.targets import get_target
from tridesign.errors import TridesignError, UsageError
from tridesign.models.registry import get_model
from tridesign.progress import step

MODEL_FILE = "model.onnx"
INPUTS_FILE = "inputs.npz"
REFERENCE_FILE = "reference_outputs.npz"
# Backend vs ONNX Runtime on the same graph: |got - ref| <= VERIFY_ATOL + VERIFY_RTOL * max|ref|.
VERIFY_ATOL = 1e-4
VERIFY_RTOL = 1e-3


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "tridesign": __version__}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


Source = tuple[onnx.ModelProto, dict[str, np.ndarray], list[dict[str, np.ndarray]], dict[str, Any]]


def resolve_source(source: str, options: CompileOptions) -> Source:
    """SOURCE -> (normalized, pruned ONNX; verification inputs; calibration inputs; manifest description)."""
    path = Path(source)
    if path.suffix == ".onnx" or path.exists():
        passes.check_options(options, registered=False)
        with step(f"loading {path.name}"):
            model = onnx_io.load_onnx(path)
            original_opset = onnx_io.default_opset(model)
            model = onnx_io.normalize(model)
        signature = onnx_io.io_signature(model)

        def make_inputs(seed: int) -> dict[str, np.ndarray]:
            return onnx_io.random_inputs(signature["inputs"], seed, options.batch)

        described = {"kind": "onnx", "path": str(path.resolve()), "sha256": onnx_io.sha256_file(path), "opset_in": original_opset}
        described |= passes.prune_user_onnx(model, options)
        return model, make_inputs(options.seed), passes.calibration_batches(make_inputs, options.seed), described
    spec = get_model(source)  # a one-line "unknown model" usage error listing the known names
    spec.check_config(options.config)
    passes.check_options(options, registered=True)
    import torch

    def make_inputs(seed: int) -> dict[str, np.ndarray]:
        return spec.example_inputs(options.config, options.batch, seed)

    with step(f"building {spec.name}:{options.config} in torch"):
        torch.manual_seed(options.seed)
        module = spec.instantiate(options.config)
    inputs = make_inputs(options.seed)
    prune_report, pruned = passes.prune_registered(module, spec.name, options, inputs)
    with step("exporting to ONNX and verifying against torch"):
        model, report = export_verified(spec, module, options.config, inputs)
    passes.annotate(model, prune_report)
    payload = model.SerializeToString()
    described = {
        "kind": "registered",
        "model": spec.name,
        "project": spec.project,
        "config": options.config,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "export": report.to_dict(),
        **pruned,
    }
    calibration = spec.calibration(options.config, options.seed) if spec.calibration else passes.calibration_batches(make_inputs, options.seed)
    return model, inputs, calibration, described


def verify(session_outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, Any]:
    max_abs, max_rel = compare_outputs(reference, session_outputs)
    scale = max((float(np.max(np.abs(r))) for r in reference.values() if r.size), default=0.0)
    tolerance = VERIFY_ATOL + VERIFY_RTOL * scale
    return {
        "reference": "onnxruntime CPU, graph optimizations disabled, on model.onnx",
        "max_abs_err": max_abs,
        "max_rel_err": max_rel,
        "tolerance": tolerance,
        "rule": f"max|got-ref| <= {VERIFY_ATOL:g} + {VERIFY_RTOL:g} * max|ref|",
        "passed": max_abs <= tolerance,
    }


def options_hash(options: CompileOptions) -> str:
    text = json.dumps({k: str(v) for k, v in vars(options).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_artifact(source: str, options: CompileOptions, out_dir: Path) -> dict[str, Any]:
    """Compile SOURCE with `options` into the artifact directory `out_dir`; return its manifest."""
    out_dir = Path(out_dir)
    backend = get_backend(options.backend)
    check_writable_parent(out_dir)
    if options.tune_trials < 0:
        raise UsageError("--tune must be a non-negative number of trials")
    model, inputs, calibration, described = resolve_source(source, options)
    with atomic_dir(out_dir) as tmp:
        onnx.save(model, str(tmp / MODEL_FILE))
        quantized = passes.quantize(tmp / MODEL_FILE, options, calibration)
        with step("reference run in ONNX Runtime"):
            reference = run_onnxruntime(str(tmp / MODEL_FILE), inputs)
        np.savez(tmp / INPUTS_FILE, **inputs)
        np.savez(tmp / REFERENCE_FILE, **reference)
        started = time.perf_counter()
        with step(f"compiling with {backend.name} for {options.target}"):
            result = backend.compile(tmp / MODEL_FILE, tmp, options)
        compile_s = time.perf_counter() - started
        compiled = onnx.load(str(tmp / MODEL_FILE), load_external_data=False)
        manifest: dict[str, Any] = {
            "format": "tridesign-artifact/1",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": described,
            "backend": backend.name,
            "target": {"name": options.target, **result.target},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
            "config_hash": options_hash(options),
            "files": [MODEL_FILE, INPUTS_FILE, REFERENCE_FILE, *([passes.FP32_FILE] if quantized else []), *result.files, MANIFEST],
            "tuned": result.tuned,
            "tuning": result.tuning,
            "notes": result.notes + passes.quantization_notes(quantized),
            "compile_seconds": round(compile_s, 3),
            **quantized,
            "versions": package_versions("onnx", "onnxruntime", "apache-tvm", "numpy", "torch"),
            **onnx_io.io_signature(compiled),
            # Per weight: method, pattern, density and the bit-packed mask (the same record as in model.onnx).
            "weight_sparsity": {k: v.model_dump(mode="json") for k, v in read_weight_sparsity(compiled).items()},
            "sparse_layers": result.sparse_layers,
        }
        if not get_target(options.target).runs_here:
            manifest["verification"] = {"passed": None, "skipped": f"built for {options.target}, which cannot run here"}
            manifest["notes"].append(
                f"not verified here: run `tridesign profile DIR --remote HOST:PORT` on the {options.target} board "
                "(it compares the board's outputs with reference_outputs.npz)"
            )
        else:
            with step("verifying the compiled artifact against ONNX Runtime"):
                session = backend.load(tmp, manifest)
                manifest["verification"] = verify(session.run(inputs), reference)
        if manifest["verification"]["passed"] is False:
            v = manifest["verification"]
            raise TridesignError(
                f"{backend.name} output differs from ONNX Runtime: max abs error {v['max_abs_err']:.3g} > {v['tolerance']:.3g}; nothing was written"
            )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def load_manifest(artifact_dir: Path) -> dict[str, Any]:
    """Read an artifact's manifest with one-line errors for a path that is not an artifact."""
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST
    if not artifact_dir.is_dir():
        raise TridesignError(f"{artifact_dir}: not an artifact directory (run `tridesign compile` first)")
    if not path.is_file():
        raise TridesignError(f"{artifact_dir}: no {MANIFEST}; not a tridesign artifact")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TridesignError(f"{path}: corrupt manifest ({err.msg} at line {err.lineno})") from None
