"""Run a bundle and say what happened: which engine ran, its outputs against the bundle's reference
outputs per output (max abs and relative error against the stated tolerance: Polygraphy's
comparison), latency (median, p90, p99 of timed runs after warm-up) and, on a Jetson, the board's
mean power and energy per inference measured during the timed runs.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from .check import BoardError, load_arrays, verify_dir
from .engines import open_engine


def check_inputs(meta: dict[str, Any], inputs: dict[str, np.ndarray]) -> None:
    """Names, dtypes and fixed dimensions as the bundle declares them."""
    expected = {item["name"]: item for item in meta["inputs"]}
    if set(inputs) != set(expected):
        raise BoardError(f"inputs must be exactly {sorted(expected)}, got {sorted(inputs)}")
    for name, item in expected.items():
        array = inputs[name]
        if array.dtype.name != item["dtype"]:
            raise BoardError(f"input {name!r} has dtype {array.dtype.name}, expected {item['dtype']}")
        if array.ndim != len(item["shape"]) or any(
            isinstance(d, int) and array.shape[i] != d for i, d in enumerate(item["shape"])
        ):
            raise BoardError(f"input {name!r} has shape {list(array.shape)}, expected {item['shape']}")


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], tolerance: dict) -> list[dict]:
    """Per output: max |got - ref|, that over max|ref|, and pass if within atol + rtol * max|ref|
    (+ the output's quantization step where the tolerance lists `steps`: an int8 model)."""
    rows = []
    for name, ref in reference.items():
        got = np.asarray(outputs[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            rows.append({"output": name, "passed": False, "error": f"shape {list(got.shape)} != {list(ref.shape)}"})
            continue
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_abs = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        step = float(tolerance.get("steps", {}).get(name, 0.0))
        allowed = tolerance["atol"] + tolerance["rtol"] * scale + step
        rows.append({
            "output": name, "max_abs_err": max_abs, "max_rel_err": max_abs / scale if scale > 0 else max_abs,
            "atol": tolerance["atol"], "rtol": tolerance["rtol"], "step": step, "allowed": allowed, "passed": max_abs <= allowed,
        })
    return rows


def run_bundle(
    root: Path, inputs: dict[str, np.ndarray] | None = None, engine: str = "auto",
    repeat: int = 50, warmup: int = 5, engine_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify the unpacked bundle `root`, run it, and return (report, outputs).

    Without `inputs` the bundle's reference inputs are used and the outputs are compared with its
    reference outputs; with them, only the run and the latency are reported.
    """
    if repeat < 1 or warmup < 0:
        raise BoardError("--repeat must be >= 1 and --warmup >= 0")
    root = Path(root).resolve()  # `.` from inside the bundle: engines are kept beside it, not in it
    meta = verify_dir(root)
    reference_run = inputs is None
    if inputs is None:
        inputs = load_arrays(root / meta["reference"]["inputs"])
    check_inputs(meta, inputs)
    opened = open_engine(root, meta, engine, Path(engine_dir) if engine_dir else root.parent / f"{root.name}.engines")
    outputs = opened.session.run(inputs)
    times, power = _timed(opened.session, inputs, repeat, warmup)
    report: dict[str, Any] = {
        "bundle": str(root), "model": meta["source"], "target": meta["target"]["name"],
        "engine": opened.name, "precision": opened.precision, "notes": opened.notes,
        "outputs": {name: list(np.shape(value)) for name, value in outputs.items()},
        "latency_ms": {
            "median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)), "repeat": repeat, "warmup": warmup,
        },
    }
    if power is not None:
        report["power"] = power | {"energy_per_inference_mj": power["mean_w"] * float(np.median(times))}
    if reference_run:
        tolerance = meta["tolerance"][opened.name]
        report["comparison"] = compare(outputs, load_arrays(root / meta["reference"]["outputs"]), tolerance)
        report["passed"] = all(row["passed"] for row in report["comparison"])
    return report, outputs


def _timed(session, inputs: dict[str, np.ndarray], repeat: int, warmup: int) -> tuple[np.ndarray, dict | None]:
    """Wall-clock ms of `repeat` runs after `warmup`, with the board's power sampled meanwhile."""
    from .power import PowerSampler

    for _ in range(warmup):
        session.run(inputs)
    times = np.empty(repeat)
    sampler = PowerSampler() if PowerSampler.available() is None else None
    with sampler or contextlib.nullcontext():
        for i in range(repeat):
            start = time.perf_counter()
            session.run(inputs)
            times[i] = (time.perf_counter() - start) * 1000.0
    if sampler is None or not sampler.samples:
        return times, None
    return times, {"mean_w": sampler.mean_w, "samples": len(sampler.samples), "source": sampler.source}
