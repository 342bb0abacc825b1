"""Same inputs and seeds, same bytes: export, compile (ORT; TVM marked slow), simulate and finetune run twice.

Only wall-clock fields may differ, and only in the manifest (see `tridesign.artifact.Manifest`):
`created` and the durations (`compile_seconds`, any key ending in `_s`). `VOLATILE` blanks exactly
those values in the manifest's text; everything else, every other file included, is compared byte
for byte. Causes found and fixed at the source: ORT named the layout nodes it inserts with a
counter drawn in a different order each run (tridesign/compiler/backends/ort.py), and a finetuned
artifact's manifest recorded the random scratch path its graph was compiled from
(tridesign/workflows/finetune.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

# The manifest's wall-clock fields, the only bytes two identical builds may differ in.
VOLATILE = re.compile(r'^(\s*"(?:created|compile_seconds|\w+_s)": )[^,\n]*', re.MULTILINE)


def stable_manifest(text: str) -> str:
    """The manifest's text with the values of the wall-clock fields blanked."""
    return VOLATILE.sub(r"\1<volatile>", text)


def artifact_differences(a: Path, b: Path) -> list[str]:
    """The files in which two artifact directories differ (by name set, then by bytes)."""
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    if names_a != names_b:
        return [f"file lists differ: {names_a} vs {names_b}"]
    differ = []
    for name in names_a:
        left, right = (a / name).read_bytes(), (b / name).read_bytes()
        if name == "manifest.json":
            left, right = stable_manifest(left.decode()).encode(), stable_manifest(right.decode()).encode()
        if left != right:
            differ.append(name)
    return differ


def test_volatile_fields_are_only_the_wall_clock_ones() -> None:
    text = json.dumps({"created": "2026-01-01T00:00:00Z", "compile_seconds": 0.5,
                       "tuning": {"build_s": 1.2, "kernels": 3}, "seed": 0}, indent=2)
    blanked = stable_manifest(text)
    assert blanked.count("<volatile>") == 3
    assert '"kernels": 3' in blanked and '"seed": 0' in blanked


def test_export_is_byte_identical(tmp_path, cli):
    for i in (1, 2):
        done = cli("export", "resnet20", "--config", "tiny", "-o", str(tmp_path / f"m{i}.onnx"))
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "m1.onnx").read_bytes() == (tmp_path / "m2.onnx").read_bytes()


@pytest.mark.parametrize("extra", [
    ["--backend", "ort"],
    ["--backend", "ort", "--prune", "unstructured:0.5"],
    pytest.param(["--backend", "tvm"], marks=pytest.mark.slow),  # 2 x 12 s; untuned, module.so included
], ids=["ort", "ort-pruned", "tvm"])
def test_compile_is_byte_identical_but_for_the_wall_clock(tmp_path, cli, extra):
    for i in (1, 2):
        done = cli("compile", "resnet20", "--config", "tiny", *extra, "-o", str(tmp_path / f"a{i}"))
        assert done.returncode == 0, done.stderr
    assert artifact_differences(tmp_path / "a1", tmp_path / "a2") == []


def test_simulate_reports_are_byte_identical(tmp_path, cli, ort_artifact):
    outputs = []
    for i in (1, 2):
        done = cli("simulate", str(ort_artifact), "--json", "--csv", str(tmp_path / f"layers{i}.csv"))
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and '"cycles"' in outputs[0]
    assert (tmp_path / "layers1.csv").read_bytes() == (tmp_path / "layers2.csv").read_bytes()


def test_finetune_writes_identical_weights_and_manifest(tmp_path, cli, ort_artifact):
    """Two runs in sibling directories with the same relative `-o`, since the manifest records
    the output path as given (and the source resolved: the same artifact for both)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.standard_normal((32, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 32))
    reports = []
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        done = cli("finetune", str(ort_artifact), "--params", "fc.*", "--data", str(data), "--steps", "3",
                   "--queries", "4", "--batch", "16", "--lr", "0.01", "-o", "tuned", "--json", cwd=tmp_path / run)
        assert done.returncode == 0, done.stderr
        reports.append(done.stdout)
    assert reports[0] == reports[1]
    one, two = tmp_path / "one" / "tuned", tmp_path / "two" / "tuned"
    assert artifact_differences(one, two) == []
    assert not np.array_equal(_initializer(one, "fc.weight"), _initializer(ort_artifact, "fc.weight"))  # it did train


def _initializer(artifact: Path, name: str) -> np.ndarray:
    graph = onnx.load(str(artifact / "model.onnx")).graph
    return next(numpy_helper.to_array(t) for t in graph.initializer if t.name == name)
