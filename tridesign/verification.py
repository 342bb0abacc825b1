"""How outputs are checked, wherever they are checked: export (torch vs ONNX Runtime), compile
(backend vs ONNX Runtime on the compiled graph), profile and the device side.

ONNX Runtime on the CPU with graph optimizations disabled is the reference every engine is held
to; it needs only numpy and onnxruntime, so a board without torch or the compiler can check too.

An int8 (QDQ) graph is the exception. Its meaning is its integer execution: ONNX Runtime with
optimizations fuses each DequantizeLinear → op → QuantizeLinear into integer kernels that
requantize with integer rounding, while the unfused graph computes in float and rounds elsewhere;
the two differ by a few quantization steps at the outputs (2-3 on the tracker's detector), which
no fp32 tolerance admits. So an int8 graph's reference is ONNX Runtime's integer kernels, and each
output may differ from it by one quantization step of that output (the scale of the
DequantizeLinear that produces it) on top of the fp32 rule.
"""

from __future__ import annotations

import numpy as np
import onnx

from tridesign.artifact import Verification
from tridesign.errors import TridesignError

# Backend vs ONNX Runtime on the same graph: |got - ref| <= VERIFY_ATOL + VERIFY_RTOL * max|ref|.
VERIFY_ATOL = 1e-4
VERIFY_RTOL = 1e-3


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> tuple[float, float]:
    """Worst max-abs error and max-abs error relative to the reference's magnitude, over outputs."""
    worst_abs = worst_rel = 0.0
    for name, ref in reference.items():
        got = np.asarray(candidate[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            raise TridesignError(f"output {name!r}: shape {got.shape} differs from reference {ref.shape}")
        diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / scale if scale > 0 else diff)
    return worst_abs, worst_rel


def run_onnxruntime(model: onnx.ModelProto | bytes | str, inputs: dict[str, np.ndarray],
                    int8_kernels: bool = False) -> dict[str, np.ndarray]:
    """Reference execution: ONNX Runtime on the CPU with graph optimizations disabled, or with them
    enabled for an int8 graph (`int8_kernels`: its integer kernels are what the graph means)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if int8_kernels
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        session = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own C++ exception types; a model it refuses is the file's fault
        raise TridesignError(f"ONNX Runtime cannot load the model: {' '.join(str(err).split())[:300]}") from None
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def output_steps(model: onnx.ModelProto) -> dict[str, float]:
    """Each graph output's quantization step: the scale of the DequantizeLinear producing it (the
    largest, if per channel); outputs of float ops are absent. Empty for a float graph."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    steps = {}
    for output in model.graph.output:
        node = producers.get(output.name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in initializers:
            steps[output.name] = float(np.max(np.abs(numpy_helper.to_array(initializers[node.input[1]]))))
    return steps


def verify(session_outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
           steps: dict[str, float] | None = None) -> Verification:
    """A compiled artifact's outputs against the reference, under the fp32 rule above; for an int8
    graph (`steps` given: `output_steps`) plus one quantization step per output it names."""
    int8, steps = steps is not None, steps or {}
    scale = max((float(np.max(np.abs(r))) for r in reference.values() if r.size), default=0.0)
    fp_tolerance = VERIFY_ATOL + VERIFY_RTOL * scale
    max_abs, max_rel = compare_outputs(reference, session_outputs)
    passed, tolerance = True, fp_tolerance
    for name, ref in reference.items():
        allowed = fp_tolerance + steps.get(name, 0.0)
        error, _ = compare_outputs({name: ref}, {name: session_outputs[name]})
        passed &= error <= allowed
        if error == max_abs:
            tolerance = allowed
    rule = f"max|got-ref| <= {VERIFY_ATOL:g} + {VERIFY_RTOL:g} * max|ref|"
    return Verification(
        reference="onnxruntime CPU, " + ("int8 kernels (graph optimizations enabled)" if int8 else "graph optimizations disabled")
                  + ", on model.onnx",
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        tolerance=tolerance,
        rule=rule + (" + one quantization step of each output (its DequantizeLinear scale)" if int8 else ""),
        passed=passed,
    )
