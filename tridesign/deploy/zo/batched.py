"""Forward parallelization inside one engine run: many perturbed forwards at once.

`BatchedSuffix` wraps the suffix graph in an ONNX `Scan` whose scan inputs are the trainable
tensors stacked over a leading perturbation axis [k, ...]; the cached activations are read from
the outer scope. One `run` evaluates k parameter vectors, so per-query overhead (Python, binding,
session dispatch) is paid once per chunk instead of once per query — the batched path the ZO
estimators use through `loss_batched`. Spreading them over processes is tridesign.deploy.zo.process_pool.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from tridesign.deploy.zo.params import Param

STACK = "__zo_stack"


def scan_model(suffix: onnx.ModelProto, params: list[Param], output: str) -> onnx.ModelProto:
    """suffix(features, θ) -> y becomes scan(features, θ[k]) -> y[k]."""
    trainable = {p.initializer for p in params}
    body = onnx.GraphProto()
    body.CopyFrom(suffix.graph)
    body.name = "zo_perturbation_body"
    outer_inputs = [i for i in body.input if i.name not in trainable]
    param_inputs = [next(i for i in body.input if i.name == p.initializer) for p in params]
    del body.input[:]
    body.input.extend(param_inputs)
    outs = [o for o in body.output if o.name == output]
    del body.output[:]
    body.output.extend(outs)
    stacked_inputs = [
        helper.make_tensor_value_info(p.initializer + STACK, onnx.TensorProto.FLOAT, ["k", *p.shape]) for p in params
    ]
    scan = helper.make_node(
        "Scan",
        [p.initializer + STACK for p in params],
        [output + STACK],
        num_scan_inputs=len(params),
        body=body,
        name="zo_perturbations",
    )
    graph = helper.make_graph(
        [scan],
        "zo_batched_suffix",
        outer_inputs + stacked_inputs,
        [helper.make_tensor_value_info(output + STACK, onnx.TensorProto.FLOAT, ["k", *_dims(outs[0])])],
    )
    model = helper.make_model(graph, opset_imports=list(suffix.opset_import), ir_version=suffix.ir_version)
    onnx.checker.check_model(model)
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or f"d{i}") for i, d in enumerate(dims)]


class BatchedSuffix:
    """One ORT session running k perturbed copies of the suffix per call."""

    def __init__(self, suffix: onnx.ModelProto, params: list[Param], output: str, opts: ort.SessionOptions) -> None:
        self.params = params
        self.session = ort.InferenceSession(
            scan_model(suffix, params, output).SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )

    def run(self, features: dict[str, np.ndarray], thetas: np.ndarray) -> np.ndarray:
        """features: cached activations; thetas[k, d] -> outputs [k, ...]."""
        feed = dict(features)
        for p in self.params:
            feed[p.initializer + STACK] = np.ascontiguousarray(
                thetas[:, p.offset : p.offset + p.size].reshape(len(thetas), *p.shape), dtype=np.float32
            )
        return self.session.run(None, feed)[0]
