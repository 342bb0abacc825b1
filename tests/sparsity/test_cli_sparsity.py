"""`tridesign sparsity`: per-layer rows from annotations, MACs, backend decisions, errors."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from tridesign.artifact import Manifest, OnnxSource, TargetRecord, TensorSpec, Verification, write_manifest
from tridesign.cli.main import app
from tridesign.compiler.onnx_io import io_signature
from tridesign.compiler.sparsity import prune_onnx
from tridesign.compiler.sparsity.inspect import layer_rows
from tridesign.sparsity_plan import load_plan

from .test_onnx_prune import user_model

RUNNER = CliRunner()


def manifest_for(model: onnx.ModelProto, backend: str, sparse_layers: list[dict]) -> Manifest:
    """A complete manifest around `model`, as compile would write it, with the backend's decisions."""
    signature = io_signature(model)
    return Manifest(
        created="2026-01-01T00:00:00Z",
        source=OnnxSource(path="model.onnx", sha256="0" * 64, opset_in=17),
        backend=backend,
        target=TargetRecord(name="host"),
        options={},
        config_hash="0" * 16,
        files=["model.onnx", "manifest.json"],
        tuned=False,
        tuning={},
        notes=[],
        compile_seconds=0.0,
        versions={},
        inputs=[TensorSpec(**t) for t in signature["inputs"]],
        outputs=[TensorSpec(**t) for t in signature["outputs"]],
        sparse_layers=sparse_layers,
        verification=Verification(passed=True),
    )


def test_rows_follow_annotations_and_macs(tmp_path) -> None:
    model = user_model()
    prune_onnx(model, load_plan("nm:2:4"))
    rows = {r["weight"]: r for r in layer_rows(model)}
    assert rows["wc"]["dense_macs"] == 2 * 8 * 6 * 6 * 27  # batch 2, 8x6x6 outputs, 27 MACs each
    assert rows["wm"]["dense_macs"] == 2 * 288 * 16
    for r in rows.values():
        assert r["pattern"] == "nm:2:4" and r["ran"] == "n/a (no artifact)"
        assert r["effective_macs"] == pytest.approx(r["dense_macs"] * r["density"], abs=1)
    assert rows["wm"]["density"] == 0.5


def test_cli_json_and_table_on_an_artifact(tmp_path) -> None:
    model = user_model()
    prune_onnx(model, load_plan("unstructured:0.8"))
    art = tmp_path / "art"
    art.mkdir()
    onnx.save(model, art / "model.onnx")
    decision = {"weight": "wm", "op": "matmul", "pattern": "unstructured", "density": 0.2, "sparse": True,
                "kernel": "bsr_matmul", "reason": "density 0.20 <= 0.40"}
    write_manifest(art, manifest_for(model, backend="tvm", sparse_layers=[decision]))
    result = RUNNER.invoke(app, ["sparsity", str(art), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    ran = {r["weight"]: r["ran"] for r in payload["layers"]}
    assert ran == {"wc": "dense (tvm)", "wm": "sparse", "wg": "dense (tvm)"}
    assert payload["summary"]["sparse_layers_run"] == 1
    dense = sum(r["dense_macs"] for r in payload["layers"])
    effective = sum(r["dense_macs"] * r["density"] for r in payload["layers"])
    assert payload["summary"]["mac_reduction"] == pytest.approx(dense / effective, rel=1e-3)
    assert payload["summary"]["mac_reduction"] > 3  # 80 % of the weights are gone
    table = RUNNER.invoke(app, ["sparsity", str(art / "model.onnx")])
    assert table.exit_code == 0 and f"{payload['summary']['mac_reduction']:.2f}x" in table.stdout


def test_unannotated_zeros_are_reported(tmp_path) -> None:
    model = user_model()
    init = next(i for i in model.graph.initializer if i.name == "wg")
    arr = onnx.numpy_helper.to_array(init).copy()
    arr[:, ::2] = 0
    init.CopyFrom(onnx.numpy_helper.from_array(arr, "wg"))
    rows = {r["weight"]: r for r in layer_rows(model)}
    assert rows["wg"]["pattern"] == "unannotated zeros" and rows["wg"]["density"] == 0.5
    assert rows["wc"]["pattern"] == "dense"


@pytest.mark.parametrize(
    "name, message", [("missing.onnx", "no such file"), ("notes.txt", "not a readable ONNX model"), ("", "no model.onnx")]
)
def test_bad_sources_are_one_line_failures(tmp_path, name: str, message: str) -> None:
    """Opened like every SOURCE (tridesign.artifact.open_source): a file that is missing or broken
    is a failure (exit 1), as the README promises for every command, not a usage error."""
    from tridesign.compiler.sparsity.inspect import load
    from tridesign.errors import TridesignError, UsageError

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TridesignError, match=message) as raised:
        load(tmp_path / name)
    assert not isinstance(raised.value, UsageError)
