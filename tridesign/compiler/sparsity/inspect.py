"""Per-layer sparsity of an ONNX graph or artifact: density, pattern, dense vs effective MACs, and
whether the backend ran each layer sparse or dense.

Reads only what the graph carries (the `tridesign.weight_sparsity` annotations, or the zeros
themselves for weights without one) and what the artifact manifest says the backend did, so the
report describes the deployed model. Effective MACs are dense MACs times the weight's density: the
work a kernel that skips zeros would do; dense engines (ONNX Runtime) do the dense MACs anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.sparsity.onnx_prune import weight_graph, weight_initializers, weight_operand
from tridesign.artifact import Manifest, open_source
from tridesign.errors import TridesignError
from tridesign.hwsim.workload import load_workload

def load(source: Path | str) -> tuple[onnx.ModelProto, Manifest | None]:
    """An .onnx file (no manifest) or an artifact directory (model.onnx + its manifest)."""
    opened = open_source(source, allow=("onnx", "artifact"))
    path = opened.onnx_path
    try:
        return onnx.load(str(path)), opened.manifest
    except Exception as err:  # onnx raises DecodeError and friends for a corrupt file
        raise TridesignError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def _execution(manifest: Manifest | None) -> tuple[dict[str, dict], str]:
    """Per-weight decisions a backend recorded (`sparse_layers`) and the fallback label."""
    if manifest is None:
        return {}, "n/a (no artifact)"
    decisions = {d["weight"]: d for d in manifest.sparse_layers if "weight" in d}
    return decisions, f"dense ({manifest.backend})"


def layer_rows(model: onnx.ModelProto, manifest: Manifest | None = None) -> list[dict[str, Any]]:
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
