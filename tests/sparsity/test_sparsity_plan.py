"""The one sparsity grammar: SPEC strings, per-layer YAML plans and annotation pattern labels."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tridesign.annotations import WeightSparsity
from tridesign.errors import TridesignError, UsageError
from tridesign.sparsity_plan import (
    NM,
    Block,
    Channel,
    NoSparsity,
    Pattern3x3,
    SparsityPlan,
    Unstructured,
    ZOGrasp,
    load_plan,
    parse_method,
    parse_pattern,
)


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
        ("none", "none", 0.0, "dense"),
    ],
)
def test_parse_round_trips(text: str, method: str, sparsity: float, label: str) -> None:
    spec = parse_method(text)
    assert (spec.method, spec.sparsity, spec.pattern) == (method, pytest.approx(sparsity), label)
    assert spec.density == pytest.approx(1 - sparsity)
    assert spec.text == text and str(spec) == text
    assert parse_method(spec.text) == spec


def test_records_are_typed() -> None:
    assert parse_method("unstructured:0.8") == Unstructured(0.8, "global")
    assert parse_method("unstructured:0.8:layer") == Unstructured(0.8, "layer")
    assert parse_method("block:0.9:4x2") == Block(0.9, 4, 2)
    assert parse_method(" NM:2:4 ") == NM(2, 4)
    assert parse_method("pattern:4:0.9").annotation_method == "pattern3x3"
    assert parse_method("zograsp:0.9") != Unstructured(0.9)  # same fields, another method


@pytest.mark.parametrize(
    "text", ["magic:0.5", "unstructured", "unstructured:1.2", "block:0.9:4", "block:0.9:0x4", "nm:4:2", "nm:2",
             "pattern:3:0.9", "channel:abc", "none:1"],
)
def test_bad_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_method(text)


def test_yaml_plan_first_rule_wins(tmp_path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text('default: unstructured:0.8\nlayers:\n  conv1: none\n  "layer3.*": nm:2:4\n  "layer*": block:0.5:1x4\n')
    plan = load_plan(path)
    assert plan.for_layer("conv1") == NoSparsity()
    assert plan.for_layer("layer3.0.conv1").text == "nm:2:4"
    assert plan.for_layer("layer1.0.conv1").text == "block:0.5:1x4"
    assert plan.for_layer("fc").text == "unstructured:0.8"
    assert load_plan(str(path)) == plan
    assert str(plan) == str(path)  # a manifest names the file as given


def test_plan_from_one_spec_prints_its_canonical_text() -> None:
    plan = load_plan("unstructured:.80")
    assert plan == SparsityPlan(Unstructured(0.8)) and str(plan) == "unstructured:0.8"


@pytest.mark.parametrize(
    "content", ["default: nm:2\n", "layers: [a, b]\n", "extra: 1\n", "default: channel:0.5\nlayers:\n  fc: nm:2:4\n", "{bad"],
)
def test_bad_yaml_plans(tmp_path, content: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(content)
    with pytest.raises(UsageError) as raised:
        load_plan(path)
    assert "\n" not in str(raised.value)


def test_channel_cannot_be_mixed_in_any_plan() -> None:
    with pytest.raises(UsageError, match="channel pruning cannot be mixed"):
        SparsityPlan(Channel(0.5), (("fc", NM(2, 4)),))
    assert SparsityPlan(Channel(0.5), (("fc", NoSparsity()),)).for_layer("fc") == NoSparsity()


def test_missing_yaml_file(tmp_path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("label", "record"),
    [
        ("dense", NoSparsity()),
        ("unstructured", Unstructured(0.75)),
        ("block:4x4", Block(0.75, 4, 4)),
        ("block:0.8:1x2", Block(0.75, 1, 2)),  # the SPEC spelling, found in some annotations
        ("nm:2:9", NM(2, 9)),
        ("pattern3x3:4of9", Pattern3x3(0.75)),
        ("channel", Channel(0.75)),
        ("channel:zeroed", Channel(0.75, zeroed=True)),
    ],
)
def test_annotation_labels_parse_to_records(label: str, record) -> None:
    assert parse_pattern(label, density=0.25) == record
    stored = WeightSparsity(method="test", pattern=label, density=0.25, shape=(4, 4))
    assert stored.method_record() == record
    assert stored.pattern == label  # the stored format is untouched


@pytest.mark.parametrize("label", ["", "random", "nm:5:4", "nm:0:4", "block:4", "block:0x4", "block:4x00", "pattern3x3:3of9", "channel:gone"])
def test_unknown_labels_are_one_line_errors(label: str) -> None:
    with pytest.raises(TridesignError, match="unknown sparsity pattern"):
        parse_pattern(label, density=0.5)


# Property tests: every valid record reads back from its text and its label; nothing else escapes.

ratios = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)
sizes = st.integers(min_value=1, max_value=64)
nm_pairs = st.integers(min_value=1, max_value=32).flatmap(lambda m: st.tuples(st.integers(1, m), st.just(m)))
valid_methods = st.one_of(
    st.builds(Unstructured, ratios, st.sampled_from(["global", "layer"])),
    st.builds(Block, ratios, sizes, sizes),
    nm_pairs.map(lambda nm: NM(*nm)),
    st.builds(Pattern3x3, ratios),
    st.builds(Channel, ratios),
    st.builds(ZOGrasp, ratios),
    st.just(NoSparsity()),
)


@given(valid_methods)
def test_text_round_trips(method) -> None:
    assert parse_method(method.text) == method


@given(valid_methods, st.booleans())
def test_label_round_trips(method, zeroed: bool) -> None:
    if isinstance(method, Channel):
        method = Channel(method.sparsity, zeroed)
    parsed = parse_pattern(method.pattern, method.density)
    assert parsed.pattern == method.pattern
    assert parsed.density == pytest.approx(method.density)
    if isinstance(method, (NM, NoSparsity)):  # the structure fixes the amount
        assert parsed == method
    elif isinstance(method, (ZOGrasp, Unstructured)):  # the label keeps neither ZO-GraSP nor the scope
        assert parsed == Unstructured(parsed.sparsity)
    else:
        assert parsed == replace(method, sparsity=parsed.sparsity)


out_of_range = st.one_of(
    st.floats(max_value=-5e-324), st.floats(min_value=1.0), st.just(float("nan"))  # -5e-324: the largest negative float
)


@given(
    st.sampled_from(["unstructured:{r}", "unstructured:{r}:layer", "block:{r}:4x4", "pattern:4:{r}", "channel:{r}",
                     "zograsp:{r}"]),
    out_of_range,
)
def test_out_of_range_sparsity_is_a_usage_error(form: str, ratio: float) -> None:
    with pytest.raises(UsageError, match="must be in"):
        parse_method(form.format(r=ratio))


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=64))
def test_n_above_m_is_rejected(n: int, m: int) -> None:
    if n <= m:
        assert parse_method(f"nm:{n}:{m}") == NM(n, m)
    else:
        with pytest.raises(UsageError, match="needs N <= M"):
            parse_method(f"nm:{n}:{m}")


@given(st.integers(max_value=0), st.integers(max_value=0))
def test_non_positive_sizes_are_usage_errors(rows: int, cols: int) -> None:
    for text in (f"block:0.5:{rows}x4", f"block:0.5:4x{cols}", f"nm:{rows}:4", f"nm:2:{cols}", f"pattern:{rows}:0.5"):
        with pytest.raises(UsageError):
            parse_method(text)


@given(st.text(alphabet=st.sampled_from("unstrcdblokmpa0123456789:.x-eINF²٣ "), max_size=24) | st.text(max_size=24))
def test_any_text_parses_or_is_a_usage_error(text: str) -> None:
    try:
        method = parse_method(text)
    except UsageError:
        return
    assert parse_method(method.text) == method
