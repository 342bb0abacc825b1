"""Every registered tiny model through the whole chain: export (verified against torch) -> ONNX Runtime
artifact -> TVM build of the same graph -> outputs match ONNX Runtime -> profile.

One test parametrized over the registry, so a newly registered model is covered at once. Whole-chain
models whose parts are registered separately (`zoaeds`, `qdtrack`, `unlearndiff_sd14`) run TVM only
under the `slow` marker: their parts compile the same operators; so does `qdtrack_center`, whose tiny
config tests/workflows/test_track.py compiles with both backends and compares (results row for row).
"""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.models import get_model, list_models


COVERED_ELSEWHERE = {"qdtrack_center"}


def _params():
    for spec in list_models():
        composite = bool(spec.parts) and spec.name not in spec.parts.values()
        slow = composite or spec.name in COVERED_ELSEWHERE
        yield pytest.param(spec.name, marks=[pytest.mark.slow] if slow else [], id=spec.name)


@pytest.mark.parametrize("name", list(_params()))
def test_tiny_model_compiles_with_ort_and_tvm_and_outputs_match(name, ort_artifact_for, tmp_path):
    from tridesign.compiler.backends.tvm import TvmBackend
    from tridesign.compiler.options import CompileOptions
    from tridesign.compiler.profile import profile_artifact
    from tridesign.verification import verify

    spec = get_model(name)
    artifact = ort_artifact_for(name)
    with np.load(artifact / "inputs.npz") as f:
        inputs = dict(f)
    with np.load(artifact / "reference_outputs.npz") as f:
        reference = dict(f)
    assert list(reference) == list(spec.output_names)

    backend = TvmBackend()
    result = backend.compile(artifact / "model.onnx", tmp_path, CompileOptions(backend="tvm", config="tiny"))
    assert "module.so" in result.files
    check = verify(backend.load(tmp_path).run(inputs), reference)
    assert check.passed, f"TVM vs ORT: {check.max_abs_err:.3g} > {check.tolerance:.3g}"

    report = profile_artifact(artifact, repeat=3, warmup=1)
    assert report["latency_ms"]["median"] > 0 and report["max_abs_err"] <= 1e-4
