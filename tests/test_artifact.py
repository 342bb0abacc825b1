"""The artifact contract: the typed manifest (old manifests load, unknown keys refused, one-line
errors) and `open_source`, the one way every command resolves SOURCE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tridesign.artifact import (
    MANIFEST_FILE,
    MODEL_FILE,
    FinetunedSource,
    Manifest,
    OnnxSource,
    load_manifest,
    open_source,
    parse_manifest,
)
from tridesign.errors import TridesignError, UsageError

# Written by `tridesign compile resnet20 --prune nm:2:4 --quantize int8` before the manifest was typed.
PRE_TYPED = Path(__file__).parent / "golden" / "manifest_pre_typed_ort_nm24_int8.json"


def test_a_manifest_written_before_the_type_loads_and_writes_back_unchanged() -> None:
    data = json.loads(PRE_TYPED.read_text())
    manifest = parse_manifest(data)
    assert manifest.source.kind == "registered" and manifest.source.sparsity["real_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert manifest.quantization["format"] == "QDQ" and manifest.verification.passed
    assert all(record.pattern == "nm:2:4" for record in manifest.weight_sparsity.values())
    assert manifest.to_dict() == data


def test_a_fresh_manifest_round_trips(ort_artifact) -> None:
    manifest = load_manifest(ort_artifact)
    assert parse_manifest(json.loads(manifest.to_json())) == manifest
    assert json.loads((ort_artifact / MANIFEST_FILE).read_text()) == manifest.to_dict()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (lambda d: d["source"].update(kind="telepathy"), "source: Input tag 'telepathy'"),
        (lambda d: d.pop("backend"), "backend: Field required"),
        (lambda d: d["verification"].update(passed="maybe"), "verification.passed"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_key(edit, message) -> None:
    data = json.loads(PRE_TYPED.read_text())
    edit(data)
    with pytest.raises(TridesignError, match="invalid manifest") as raised:
        parse_manifest(data, "x/manifest.json")
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("text, message", [("[1, 2]", "a JSON object expected, got list"), ('{"format": ', "corrupt manifest")])
def test_a_corrupt_manifest_file_is_one_line(tmp_path, text, message) -> None:
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(TridesignError, match=message):
        load_manifest(tmp_path)


def test_the_finetuned_source_keeps_what_it_was_compiled_as() -> None:
    compiled = OnnxSource(path="/a/finetuned.onnx", sha256="0" * 64, opset_in=17)
    source = FinetunedSource(from_="/a/art", compiled=compiled)
    dumped = source.model_dump(mode="json", by_alias=True)
    assert dumped["from"] == "/a/art" and dumped["compiled"]["kind"] == "onnx"
    data = json.loads(PRE_TYPED.read_text()) | {"source": dumped, "finetune": {"steps": 3}}
    assert parse_manifest(data).source == source


def test_open_source_tells_the_three_kinds_apart(tmp_path, ort_artifact, resnet20_onnx) -> None:
    registered = open_source("resnet20")
    assert registered.kind == "registered" and registered.onnx_path is None and registered.label == "resnet20"
    onnx_file = open_source(str(resnet20_onnx))
    assert onnx_file.kind == "onnx" and onnx_file.onnx_path == resnet20_onnx and onnx_file.manifest is None
    artifact = open_source(ort_artifact)
    assert artifact.kind == "artifact" and artifact.onnx_path == ort_artifact / MODEL_FILE
    assert isinstance(artifact.manifest, Manifest) and artifact.label == ort_artifact.name


def test_open_source_errors(tmp_path) -> None:
    with pytest.raises(TridesignError, match="missing.onnx: no such file"):
        open_source(tmp_path / "missing.onnx")
    with pytest.raises(TridesignError, match="has no model.onnx; not a tridesign artifact"):
        open_source(tmp_path)
    with pytest.raises(UsageError, match=r"no such file or directory \(expected an .onnx file or an artifact directory\)"):
        open_source(tmp_path / "nothing", allow=("onnx", "artifact"))
    with pytest.raises(UsageError, match=r"got an artifact directory \(expected a registered model name\)"):
        (tmp_path / MODEL_FILE).write_bytes(b"")
        open_source(tmp_path, allow=("registered",))
