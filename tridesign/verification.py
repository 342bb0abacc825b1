"""How outputs are checked, wherever they are checked: export (torch vs ONNX Runtime), compile
(backend vs ONNX Runtime on the compiled graph), profile and the device side.

ONNX Runtime on the CPU with graph optimizations disabled is the reference every engine is held
to; it needs only numpy and onnxruntime, so a board without torch or the compiler can check too.
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


def run_onnxruntime(model: onnx.ModelProto | bytes | str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference execution: ONNX Runtime on the CPU with graph optimizations disabled."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        session = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own C++ exception types; a model it refuses is the file's fault
        raise TridesignError(f"ONNX Runtime cannot load the model: {' '.join(str(err).split())[:300]}") from None
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def verify(session_outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Verification:
    """A compiled artifact's outputs against the reference, under the one tolerance rule above."""
    max_abs, max_rel = compare_outputs(reference, session_outputs)
    scale = max((float(np.max(np.abs(r))) for r in reference.values() if r.size), default=0.0)
    tolerance = VERIFY_ATOL + VERIFY_RTOL * scale
    return Verification(
        reference="onnxruntime CPU, graph optimizations disabled, on model.onnx",
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        tolerance=tolerance,
        rule=f"max|got-ref| <= {VERIFY_ATOL:g} + {VERIFY_RTOL:g} * max|ref|",
        passed=max_abs <= tolerance,
    )
