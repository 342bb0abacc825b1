"""Feature reuse (DeepZero): split the graph where the trainable tensors first enter it.

Everything upstream of the first trainable tensor is the same for every perturbed query of a
batch, so it runs once (the prefix) and its activations are cached; each query then re-runs only
the suffix. Finetuning the last block of ResNet-20 re-runs about a tenth of the network per query.

The split is computed, not configured: a node belongs to the suffix when any of its inputs depends
(transitively) on a trainable tensor; the cut is the set of suffix inputs computed by the prefix.
Both halves are cut out of the original graph with `onnx.utils.Extractor`, so their numbers are
the original model's to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx.shape_inference
import onnx.utils
from onnx import helper, numpy_helper

from tridesign.deploy.zo.params import data_inputs
from tridesign.errors import UsageError


@dataclass
class Split:
    """prefix: data inputs -> cut activations (None when a trainable tensor meets the raw input).

    suffix: cut activations + data inputs it still reads + trainable tensors -> the outputs.
    """

    prefix: onnx.ModelProto | None
    suffix: onnx.ModelProto
    cut: list[str]  # activations the prefix produces and the suffix reads
    passthrough: list[str]  # data inputs the suffix reads directly
    outputs: list[str]


def detach_conv_biases(model: onnx.ModelProto, trainable: list[str]) -> onnx.ModelProto:
    """Conv(x, W, b) with only b trainable becomes Add(Conv(x, W), b[:, None, None]).

    The convolution then no longer depends on θ and moves into the cached prefix: tuning folded
    BatchNorm shifts (conv biases) re-runs one convolution fewer per block.
    """
    names = set(trainable)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    axes = "zo_bias_axes"
    for node in out.graph.node:
        if node.op_type == "Conv" and len(node.input) == 3 and node.input[2] in names and node.input[1] not in names:
            raw, bias = f"{node.output[0]}__nobias", f"{node.input[2]}__chw"
            conv = onnx.NodeProto()
            conv.CopyFrom(node)
            del conv.input[2]
            conv.output[0] = raw
            nodes += [
                conv,
                helper.make_node("Unsqueeze", [node.input[2], axes], [bias], name=f"{node.name}/zo_bias_unsqueeze"),
                helper.make_node("Add", [raw, bias], [node.output[0]], name=f"{node.name}/zo_bias_add"),
            ]
        else:
            nodes.append(node)
    if len(nodes) != len(out.graph.node):
        out.graph.initializer.append(numpy_helper.from_array(np.array([1, 2], dtype=np.int64), axes))
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    return out


def dependent_nodes(model: onnx.ModelProto, sources: set[str]) -> list[onnx.NodeProto]:
    """Nodes whose value changes when any tensor in `sources` changes (graph order is topological)."""
    tainted = set(sources)
    nodes = []
    for node in model.graph.node:
        if any(name in tainted for name in node.input) or _subgraph_reads(node, tainted):
            nodes.append(node)
            tainted.update(o for o in node.output if o)
    return nodes


def _subgraph_reads(node: onnx.NodeProto, tainted: set[str]) -> bool:
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            if any(name in tainted for n in g.node for name in n.input):
                return True
    return False


def split_at_trainable(model: onnx.ModelProto, trainable: list[str], outputs: list[str] | None = None) -> Split:
    """Split `model` (trainable tensors already graph inputs) into a cached prefix and a re-run suffix."""
    outputs = outputs or [o.name for o in model.graph.output]
    suffix_nodes = dependent_nodes(model, set(trainable))
    produced = {o for n in suffix_nodes for o in n.output}
    missing = [o for o in outputs if o not in produced]
    if missing:
        raise UsageError(f"output(s) {', '.join(missing)} do not depend on the selected parameters")
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = {i.name for i in data_inputs(model)}
    needed: list[str] = []
    for node in suffix_nodes:
        for name in node.input:
            if name and name not in produced and name not in inits and name not in trainable and name not in needed:
                needed.append(name)
    cut = [n for n in needed if n not in graph_inputs]
    passthrough = [n for n in needed if n in graph_inputs]
    extractor = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model))
    suffix = extractor.extract_model(cut + passthrough + list(trainable), outputs)
    prefix = None
    if cut:
        prefix_inputs = [i.name for i in data_inputs(model) if i.name not in trainable]
        prefix = extractor.extract_model(prefix_inputs, cut)
    for part in (prefix, suffix):
        if part is not None:
            del part.metadata_props[:]
    return Split(prefix, suffix, cut, passthrough, outputs)
