"""Sparsity on ONNX graphs: pruning a user's weight initializers, and annotating exported ones.

`prune_onnx` works on any ONNX file: the prunable weights are the initializers read as the weight
operand of Conv, Gemm and MatMul (a Gemm without transB and a MatMul store the weight (in, out);
masks are computed on the (out, reduction) view either way). Channel pruning cannot shrink an
arbitrary graph safely, so on ONNX it zeroes whole filters and says so in the pattern.

`annotate_exported` carries torch-side records onto an exported graph. The exporter folds
BatchNorm into the preceding Conv (w' = w * gamma / sqrt(var + eps) per output channel) and renames
the weight, so a record is matched to the initializer of the same shape whose rows are per-row
multiples of the pruned torch weight; zeros survive the folding, so the mask still holds.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from tridesign.annotations import write_weight_sparsity
from tridesign.compiler.sparsity.apply import Weight, compute_records, nominal
from tridesign.compiler.sparsity.importance import as_matrix, channel_l1, from_matrix
from tridesign.compiler.sparsity.prune_fns import layer_mask
from tridesign.compiler.sparsity.report import LayerRecord, PruneReport
from tridesign.errors import TridesignError, UsageError
from tridesign.sparsity_plan import Channel, SparsityPlan, ZOGrasp


class _Graph:
    """Initializers and producers by name, built once per model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producers = {out: n for n in model.graph.node for out in n.output}


def weight_operand(model: onnx.ModelProto, node: onnx.NodeProto, graph: _Graph | None = None) -> str | None:
    """The initializer behind a node's weight input: itself, or the int8 tensor a QDQ graph dequantizes."""
    graph = graph or _Graph(model)
    inits = graph.inits
    if len(node.input) < 2:
        return None
    name = node.input[1]
    if name in inits:
        return name
    producer = graph.producers.get(name)
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] in inits:
        return producer.input[0]
    return None


def weight_graph(model: onnx.ModelProto) -> _Graph:
    return _Graph(model)


def weight_initializers(model: onnx.ModelProto) -> dict[str, bool]:
    """Initializer name -> stored (in, out), for the weight operand of Conv, Gemm and MatMul.

    In a QDQ (int8) graph the weight is the quantized initializer behind the DequantizeLinear;
    symmetric quantization maps zero to zero, so its zeros are the fp32 zeros.
    """
    graph = _Graph(model)
    found: dict[str, bool] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        weight = weight_operand(model, node, graph)
        if weight is None:
            continue
        dims = len(graph.inits[weight].dims)
        if node.op_type == "Conv" and dims >= 3:
            found[weight] = False
        elif node.op_type == "Gemm" and dims == 2:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            found[weight] = not trans_b
        elif node.op_type == "MatMul" and dims == 2:
            found[weight] = True
    return found


def _channel_records(weights: dict[str, Weight], plan: SparsityPlan) -> dict[str, LayerRecord]:
    """Zeroed filters; the floor counts filters, so a layer keeps at least one when it is positive."""
    records = {}
    for name, w in weights.items():
        spec = plan.for_layer(name)
        if not isinstance(spec, Channel):
            continue
        mat = as_matrix(w.values, w.transposed)
        rows = layer_mask(channel_l1(mat), spec.sparsity, plan.min_density)
        mask = from_matrix(np.repeat(rows[:, None], mat.shape[1], axis=1), w.values.shape, w.transposed)
        zeroed = Channel(spec.sparsity, zeroed=True)
        records[name] = LayerRecord(name, zeroed.method, zeroed.pattern, tuple(w.values.shape), mask, w.values * mask)
    return records


def prune_onnx(onnx_model: onnx.ModelProto, plan: SparsityPlan) -> PruneReport:
    """Prune the weight initializers of `onnx_model` in place and write the sparsity annotations.

    Layer names in a YAML plan are initializer names. ZO-GraSP is refused: it needs a loss over
    labelled task data, which an arbitrary ONNX file does not bring.
    """
    if any(isinstance(m, ZOGrasp) for m in plan.methods()):
        raise UsageError("zograsp needs a model's task data; use it on a registered model, not an ONNX file")
    kinds = weight_initializers(onnx_model)
    if not kinds:
        raise TridesignError("the ONNX model has no Conv/Gemm/MatMul weight initializers to prune")
    inits = {i.name: i for i in onnx_model.graph.initializer}
    weights = {n: Weight(numpy_helper.to_array(inits[n]), t) for n, t in kinds.items()}
    if any(isinstance(m, Channel) for m in plan.methods()):
        records = _channel_records(weights, plan)
    else:
        records = compute_records(weights, plan)
    report = PruneReport(spec=str(plan), records=records, nominal_sparsity=nominal(plan, records),
                         min_density=plan.min_density)
    report.refuse_empty_layers()  # before the graph is touched
    for name, rec in records.items():
        inits[name].CopyFrom(numpy_helper.from_array(rec.values.astype(weights[name].values.dtype), name))
    write_weight_sparsity(
        onnx_model, {n: r.weight_sparsity(transposed=False) for n, r in records.items()}
    )
    return report


def _per_row_multiple(candidate: np.ndarray, values: np.ndarray) -> bool:
    """Is every output row of `candidate` a scalar multiple of the same row of `values`?"""
    c = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    v = values.reshape(values.shape[0], -1).astype(np.float64)
    vv = (v * v).sum(axis=1)
    scale = np.divide((c * v).sum(axis=1), vv, out=np.zeros_like(vv), where=vv > 0)
    residual = np.abs(c - scale[:, None] * v).max(initial=0.0)
    return bool(residual <= 1e-4 * max(np.abs(c).max(initial=0.0), 1e-12) + 1e-7)


def annotate_exported(onnx_model: onnx.ModelProto, report: PruneReport) -> None:
    """Write the report's records onto the exported initializers they became (see module docstring).

    Raises TridesignError when a record cannot be found: a silently missing mask would make the
    kernels and the simulator describe a different model than the one deployed.
    """
    kinds = weight_initializers(onnx_model)
    inits = {i.name: i for i in onnx_model.graph.initializer if i.name in kinds}
    arrays = {n: numpy_helper.to_array(i) for n, i in inits.items()}
    taken: set[str] = set()
    out = {}
    for rec in report.records.values():
        match = None
        if rec.name in arrays and arrays[rec.name].shape == rec.shape:
            match = rec.name
        else:
            # untaken initializers first; the exporter shares one initializer between identical
            # weights (e.g. two layers pruned to all zeros), so a taken one may match again
            for name in sorted(arrays, key=lambda n: n in taken):
                arr = arrays[name]
                view = arr.T if kinds[name] and arr.ndim == 2 else arr
                if view.shape == rec.shape and _per_row_multiple(view, rec.values):
                    match = name
                    break
        if match is None:
            raise TridesignError(f"pruned weight {rec.name} {rec.shape} has no matching initializer in the exported graph")
        taken.add(match)
        transposed = kinds[match] and arrays[match].ndim == 2
        out[match] = rec.weight_sparsity(shape=tuple(arrays[match].shape), transposed=transposed)
    write_weight_sparsity(onnx_model, out)
