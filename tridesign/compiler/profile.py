"""Profiling a compiled artifact: latency distribution, throughput, memory, size, accuracy.

End-to-end latency is measured the same way for every backend -- wall time of `Session.run` on the
artifact's stored inputs after warm-up -- so numbers compare across backends. Per-layer times come
from each backend's own profiler (ORT's trace, TVM's per-kernel timing).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tridesign.compiler.backends import get_backend
from tridesign.compiler.export import compare_outputs
from tridesign.compiler.graph_stats import count_params
from tridesign.compiler.pipeline import INPUTS_FILE, MODEL_FILE, REFERENCE_FILE, load_manifest
from tridesign.errors import UsageError
from tridesign.hwsim.workload import load_workload


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Idle time before each measurement. Runtimes keep their worker threads spinning for a while after a
# run (ONNX Runtime's intra-op pool does by default), and on a small machine a spinning pool of
# another session in this process takes a core from the one being timed: TVM ResNet-20 measured
# 1.04 ms right after ORT ran and 0.70 ms after this pause (2 cores), ORT itself unchanged.
SETTLE_S = 0.2


def time_session(session, inputs: dict[str, np.ndarray], repeat: int, warmup: int) -> np.ndarray:
    """Wall-clock ms of `repeat` runs after `warmup` runs, once other runtimes' threads have parked."""
    time.sleep(SETTLE_S)
    for _ in range(warmup):
        session.run(inputs)
    times = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        session.run(inputs)
        times[i] = (time.perf_counter() - start) * 1000.0
    return times


def profile_artifact(artifact_dir: Path, repeat: int = 50, warmup: int = 5, per_layer: bool = False, top: int = 10) -> dict[str, Any]:
    """Profile the artifact in this process; see the README for the meaning of every key."""
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    backend = get_backend(manifest["backend"])
    inputs = _load_npz(artifact_dir / INPUTS_FILE)
    reference = _load_npz(artifact_dir / REFERENCE_FILE)
    session = backend.load(artifact_dir, manifest)
    outputs = session.run(inputs)
    max_abs, max_rel = compare_outputs(reference, outputs)
    times = time_session(session, inputs, repeat, warmup)
    batch = next(iter(inputs.values())).shape[0] if inputs and next(iter(inputs.values())).ndim else 1
    graph = onnx.load(str(artifact_dir / MODEL_FILE), load_external_data=False)
    median = float(np.median(times))
    report: dict[str, Any] = {
        "artifact": str(artifact_dir),
        "backend": manifest["backend"],
        "target": manifest["target"]["name"],
        "tuned": manifest.get("tuned", False),
        "batch": int(batch),
        "repeat": repeat,
        "warmup": warmup,
        "latency_ms": {
            "median": median,
            "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)),
            "min": float(times.min()),
        },
        "throughput_per_s": batch * 1000.0 / median if median > 0 else float("inf"),
        "peak_rss_mb": peak_rss_mb(),
        "parameters": count_params(graph),
        "dense_macs": load_workload(graph).macs,
        "artifact_bytes": sum(p.stat().st_size for p in artifact_dir.rglob("*") if p.is_file()),
        "max_abs_err": max_abs,
        "max_rel_err": max_rel,
    }
    if per_layer:
        layers = backend.profile_layers(artifact_dir, manifest, inputs, max(3, min(repeat, 20)))
        report["layers"] = [{"name": t.name, "op_type": t.op_type, "ms": t.ms} for t in layers[:top]]
    return report


def run_artifact(artifact_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an artifact on a user's inputs, checked against the manifest's names, shapes and dtypes."""
    manifest = load_manifest(artifact_dir)
    expected = {item["name"]: item for item in manifest["inputs"]}
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(set(inputs) - set(expected))
    if missing or extra:
        raise UsageError(
            f"inputs must be exactly {sorted(expected)}" + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else "")
        )
    for name, item in expected.items():
        array = inputs[name]
        if array.dtype.name != item["dtype"]:
            raise UsageError(f"input {name!r} has dtype {array.dtype.name}, expected {item['dtype']}")
        fixed = [(i, d) for i, d in enumerate(item["shape"]) if isinstance(d, int)]
        if array.ndim != len(item["shape"]) or any(array.shape[i] != d for i, d in fixed):
            raise UsageError(f"input {name!r} has shape {list(array.shape)}, expected {item['shape']}")
    backend = get_backend(manifest["backend"])
    return backend.load(Path(artifact_dir), manifest).run(inputs)
