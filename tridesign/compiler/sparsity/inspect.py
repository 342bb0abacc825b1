"""Per-layer sparsity of an ONNX graph or artifact: density, pattern, dense vs effective MACs, and
whether the backend ran each layer sparse or dense.

Reads only what the graph carries (the `tridesign.weight_sparsity` annotations, or the zeros
themselves for weights without one) and what the artifact manifest says the backend did, so the
report describes the deployed model. Effective MACs are dense MACs times the weight's density: the
work a kernel that skips zeros would do; dense engines (ONNX Runtime) do the dense MACs anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.sparsity.onnx_prune import weight_graph, weight_initializers, weight_operand
from tridesign.errors import TridesignError, UsageError
from tridesign.hwsim.workload import load_workload

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


def load(source: Path) -> tuple[onnx.ModelProto, dict[str, Any] | None]:
    """An .onnx file (no manifest) or an artifact directory (model.onnx + manifest.json)."""
    source = Path(source)
    if source.is_dir():
        if not (source / MODEL_FILE).is_file():
            raise UsageError(f"{source}: directory has no {MODEL_FILE} (not an artifact)")
        manifest_path = source / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        return onnx.load(str(source / MODEL_FILE)), manifest
    if source.suffix != ".onnx" or not source.is_file():
        raise UsageError(f"{source}: expected an .onnx file or an artifact directory")
    try:
        return onnx.load(str(source)), None
    except Exception as err:  # onnx raises DecodeError and friends for a corrupt file
        raise TridesignError(f"{source}: not a readable ONNX model ({type(err).__name__})") from None


def _execution(manifest: dict[str, Any] | None) -> tuple[dict[str, dict], str]:
    """Per-weight decisions a backend recorded (`sparse_layers`) and the fallback label."""
    if manifest is None:
        return {}, "n/a (no artifact)"
    decisions = {d["weight"]: d for d in manifest.get("sparse_layers", []) if "weight" in d}
    backend = str(manifest.get("backend", "?"))
    return decisions, f"dense ({backend})"


def layer_rows(model: onnx.ModelProto, manifest: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per Conv/Gemm/MatMul weight, in graph order."""
    records = read_weight_sparsity(model)
    # Dense MACs per node from the simulator's workload extraction, the one MAC counter of a graph.
    macs_of = {layer.output: layer.macs for layer in load_workload(model).layers}
    inits = {i.name: i for i in model.graph.initializer}
    kinds = weight_initializers(model)
    graph = weight_graph(model)
    decisions, fallback = _execution(manifest)
    rows = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = weight_operand(model, node, graph)
        if name not in kinds:
            continue
        weight = numpy_helper.to_array(inits[name])
        rec = records.get(name)
        density = rec.density if rec else float(np.count_nonzero(weight)) / weight.size
        macs = macs_of.get(node.output[0], 0)
        decision = decisions.get(name)
        rows.append({
            "layer": node.name or node.output[0],
            "weight": name,
            "op": node.op_type,
            "shape": list(weight.shape),
            "pattern": rec.pattern if rec else ("dense" if density == 1.0 else "unannotated zeros"),
            "density": round(density, 6),
            "dense_macs": macs,
            "effective_macs": int(round(macs * density)),
            "ran": ("sparse" if decision["sparse"] else "dense") if decision else fallback,
            "kernel": decision.get("kernel", "") if decision else "",
        })
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    dense = sum(r["dense_macs"] for r in rows)
    effective = sum(r["effective_macs"] for r in rows)
    return {
        "layers": len(rows),
        "sparse_layers_run": sum(r["ran"] == "sparse" for r in rows),
        "dense_macs": dense,
        "effective_macs": effective,
        "mac_reduction": dense / effective if effective else None,
    }
