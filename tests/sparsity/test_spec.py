"""SPEC strings and per-layer YAML plans."""

from __future__ import annotations

import pytest

from tridesign.compiler.sparsity.spec import load_plan, parse_spec
from tridesign.errors import UsageError


@pytest.mark.parametrize(
    ("text", "method", "sparsity", "label"),
    [
        ("unstructured:0.8", "unstructured", 0.8, "unstructured"),
        ("block:0.9:4x4", "block", 0.9, "block:4x4"),
        ("block:0.5:16x1", "block", 0.5, "block:16x1"),
        ("nm:2:4", "nm", 0.5, "nm:2:4"),
        ("nm:1:4", "nm", 0.75, "nm:1:4"),
        ("pattern:4:0.9", "pattern", 0.9, "pattern3x3:4of9"),
        ("channel:0.5", "channel", 0.5, "channel"),
        ("zograsp:0.9", "zograsp", 0.9, "unstructured"),
    ],
)
def test_parse_round_trips(text: str, method: str, sparsity: float, label: str) -> None:
    spec = parse_spec(text)
    assert (spec.method, spec.sparsity, spec.pattern_label) == (method, pytest.approx(sparsity), label)
    assert parse_spec(spec.text) == spec


def test_unstructured_scope() -> None:
    assert parse_spec("unstructured:0.8").scope == "global"
    assert parse_spec("unstructured:0.8:layer").scope == "layer"


@pytest.mark.parametrize(
    "text", ["magic:0.5", "unstructured", "unstructured:1.2", "block:0.9:4", "block:0.9:0x4", "nm:4:2", "nm:2",
             "pattern:3:0.9", "channel:abc", "none:1"],
)
def test_bad_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_spec(text)


def test_yaml_plan_first_rule_wins(tmp_path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text('default: unstructured:0.8\nlayers:\n  conv1: none\n  "layer3.*": nm:2:4\n  "layer*": block:0.5:1x4\n')
    plan = load_plan(path)
    assert plan.for_layer("conv1").method == "none"
    assert plan.for_layer("layer3.0.conv1").text == "nm:2:4"
    assert plan.for_layer("layer1.0.conv1").text == "block:0.5:1x4"
    assert plan.for_layer("fc").text == "unstructured:0.8"
    assert load_plan(str(path)) == plan


@pytest.mark.parametrize(
    "content", ["default: nm:2\n", "layers: [a, b]\n", "extra: 1\n", "default: channel:0.5\nlayers:\n  fc: nm:2:4\n", "{bad"],
)
def test_bad_yaml_plans(tmp_path, content: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(content)
    with pytest.raises(UsageError):
        load_plan(path)


def test_missing_yaml_file(tmp_path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")
