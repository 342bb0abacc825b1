"""Profiling a compiled artifact: latency distribution, throughput, memory, size, accuracy.

End-to-end latency is measured the same way for every backend -- wall time of `Session.run` on the
artifact's stored inputs after warm-up -- so numbers compare across backends. Per-layer times come
from each backend's own profiler (ORT's trace, TVM's per-kernel timing). Dense MACs come from the
simulator's workload extraction (tridesign.hwsim.workload), the one MAC counter of an ONNX graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tridesign.artifact import INPUTS_FILE, MODEL_FILE, REFERENCE_FILE, load_manifest, load_npz
from tridesign.compiler.backends import get_backend
from tridesign.compiler.timing import peak_rss_mb, time_session
from tridesign.verification import compare_outputs
from tridesign.errors import UsageError
from tridesign.hwsim.workload import Workload, load_workload


# Shapes, axes and indices are stored as int32/int64 initializers: they are not parameters.
INDEX_TYPES = (onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.BOOL)


def weight_elements(model: onnx.ModelProto) -> int:
    """The parameter count an ONNX graph shows: elements of its weight initializers (float ones, and
    the int8 weights of a quantized graph). Read off the graph, not torch, so it holds for any ONNX
    a user brings (tridesign.models.stats.count_params counts a torch module's parameters instead)."""
    return sum(int(np.prod(init.dims)) for init in model.graph.initializer if init.data_type not in INDEX_TYPES)


def profile_artifact(artifact_dir: Path, repeat: int = 50, warmup: int = 5, per_layer: bool = False,
                     top: int | None = 10) -> dict[str, Any]:
    """Profile the artifact in this process; see the README for the meaning of every key.
    `top`: the slowest layers reported with `per_layer` (None: all of them)."""
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    if top is not None and top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    backend = get_backend(manifest.backend)
    inputs = load_npz(artifact_dir / INPUTS_FILE)
    reference = load_npz(artifact_dir / REFERENCE_FILE)
    session = backend.load(artifact_dir)
    outputs = session.run(inputs)
    max_abs, max_rel = compare_outputs(reference, outputs)
    times = time_session(session, inputs, repeat, warmup)
    batch = next(iter(inputs.values())).shape[0] if inputs and next(iter(inputs.values())).ndim else 1
    graph = onnx.load(str(artifact_dir / MODEL_FILE), load_external_data=False)
    median = float(np.median(times))
    workload = load_workload(graph)
    report: dict[str, Any] = {
        "artifact": str(artifact_dir),
        "backend": manifest.backend,
        "target": manifest.target.name,
        "tuned": manifest.tuned,
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
        "parameters": weight_elements(graph),
        "dense_macs": workload.macs,
        "artifact_bytes": sum(p.stat().st_size for p in artifact_dir.rglob("*") if p.is_file()),
        "max_abs_err": max_abs,
        "max_rel_err": max_rel,
    }
    if per_layer:
        layers = backend.profile_layers(artifact_dir, inputs, max(3, min(repeat, 20)))
        total = sum(t.ms for t in layers)
        macs = layer_macs(workload, [(t.name, t.op_type) for t in layers]) if manifest.backend == "ort" else {}
        report["layers_timed"] = len(layers)
        report["layers_ms_total"] = total
        report["layers"] = [
            {"name": t.name, "op_type": t.op_type, "ms": t.ms, "share": t.ms / total if total else None,
             "macs": macs.get(t.name), "gmac_per_s": macs[t.name] / t.ms / 1e6 if macs.get(t.name) and t.ms else None}
            for t in (layers if top is None else layers[:top])
        ]
        if manifest.backend != "ort":
            report["layers_note"] = ("MACs per layer are given for ONNX Runtime's nodes only: TVM's kernels fuse and "
                                     "rename the graph's layers")
    return report


def layer_macs(workload: Workload, nodes: list[tuple[str, str]]) -> dict[str, int]:
    """Dense MACs of ONNX Runtime's profiled (name, op type) nodes that multiply (convs, GEMMs), by
    name. ORT keeps a node's name, or names a node it rewrote (NCHWc convs, fused activations) after
    its output tensor with `_nchwc`: that tensor's producer is found in the graph, and an activation
    or add fused into a conv counts the conv's MACs."""
    by_name = {layer.name: layer for layer in workload.layers}
    producer = {layer.output: layer for layer in workload.layers}
    out = {}
    for name, op_type in nodes:
        if not any(kind in op_type for kind in ("Conv", "Gemm", "MatMul")):
            continue
        layer = by_name.get(name) or producer.get(name.removesuffix("_nchwc"))
        while layer is not None and layer.kind != "gemm" and layer.inputs:  # a fused epilogue: the conv it follows
            layer = producer.get(layer.inputs[0][0])
        if layer is not None and layer.kind == "gemm":
            out[name] = layer.macs
    return out
