"""compile → deploy → run for every tiny model of the zoo on this machine (ONNX Runtime): each
bundle passes its own check against the reference outputs compile stored."""

from __future__ import annotations

import pytest

from tridesign.compiler.options import CompileOptions
from tridesign.deploy import bundle
from tridesign.models import list_models
from tridesign.workflows.deploy import deploy


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_tiny_model_round_trips_through_a_host_bundle(name, ort_artifact_for, tmp_path) -> None:
    out = tmp_path / f"{name}.tar.gz"
    meta = deploy(str(ort_artifact_for(name)), CompileOptions(), out)
    assert meta["engines"] == ["onnxruntime"]
    report, outputs = bundle.run(out, repeat=2, warmup=1)
    assert report["passed"], report["comparison"]
    assert set(outputs) == {o["name"] for o in meta["outputs"]}
