"""The per-layer floor (`--min-density`): global ranking never empties a layer, an explicit 0 floor
that would is refused, and the summary names the sparsest and the densest layer."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tridesign.compiler.sparsity import prune_onnx, prune_torch
from tridesign.compiler.sparsity.channel import prunable_modules
from tridesign.compiler.sparsity.importance import magnitude
from tridesign.compiler.sparsity.prune_fns import block_mask, floor_count, global_masks, keep_count, layer_mask
from tridesign.errors import UsageError
from tridesign.sparsity_plan import DEFAULT_MIN_DENSITY, SparsityPlan, Unstructured, load_plan

# The registered ResNet-18 (DP4TL's surrogate) at its tiny width, random init: PyTorch's default
# init bounds a weight by 1/sqrt(fan_in), so the widest convs hold only the smallest weights.
COLLAPSING = ["layer4.0.conv2.weight", "layer4.1.conv1.weight", "layer4.1.conv2.weight"]  # (32, 32, 3, 3) each


@pytest.fixture
def resnet18():
    import torch

    from tridesign.models.dp4tl import build_surrogate

    torch.manual_seed(0)
    return build_surrogate("tiny").eval()


@pytest.fixture
def image():
    return {"image": np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)}


def test_global_ranking_empties_the_widest_convs_without_a_floor(resnet18) -> None:
    """The collapse the floor exists for, reproduced on the plain ranking."""
    scores = {f"{n}.weight": magnitude(m.weight.detach().numpy()) for n, m in prunable_modules(resnet18).items()}
    masks = global_masks(scores, 0.9)
    assert [n for n, m in masks.items() if not m.any()] == COLLAPSING
    assert sum(m.sum() for m in masks.values()) == keep_count(sum(s.size for s in scores.values()), 0.9)


def test_default_floor_keeps_every_layer_and_the_target(resnet18, image) -> None:
    before = {n: p.detach().numpy().copy() for n, p in resnet18.named_parameters()}
    report = prune_torch(resnet18, load_plan("unstructured:0.9"), image)
    assert report.min_density == DEFAULT_MIN_DENSITY == 0.01
    assert report.real_sparsity == pytest.approx(0.9, abs=1e-5)  # the floors come out of the other layers
    for name, rec in report.records.items():
        assert rec.density >= DEFAULT_MIN_DENSITY, name
    for name in COLLAPSING:
        rec = report.records[name]
        assert int(rec.mask.sum()) == floor_count(rec.mask.size, 0.01) == 93  # ceil(0.01 * 9216)
        weight = np.abs(before[name])  # the floor keeps the layer's largest weights
        assert weight[rec.mask].min() >= weight[~rec.mask].max()
    summary = report.summary()
    assert summary["layers_at_min_density"] == COLLAPSING
    assert summary["density_min"] == {"layer": COLLAPSING[0], "density": round(93 / 9216, 6)}
    densest = max(report.records.values(), key=lambda r: r.density)
    assert summary["density_max"] == {"layer": densest.name, "density": round(densest.density, 6)}
    json.dumps(summary)


def test_explicit_zero_floor_is_refused_in_one_line(resnet18, image) -> None:
    before = {n: p.detach().numpy().copy() for n, p in resnet18.named_parameters()}
    with pytest.raises(UsageError) as raised:
        prune_torch(resnet18, load_plan("unstructured:0.9", min_density=0), image)
    message = str(raised.value)
    assert "\n" not in message and f"layer {COLLAPSING[0]} (and 2 more) with no weights" in message
    assert "unstructured:S:layer" in message and "--min-density" in message
    for name, param in resnet18.named_parameters():  # refused before the model was touched
        assert np.array_equal(param.detach().numpy(), before[name])
    per_layer = prune_torch(resnet18, load_plan("unstructured:0.9:layer", min_density=0), image)
    assert min(r.density for r in per_layer.records.values()) == pytest.approx(0.1, abs=1e-2)


def two_scale_model() -> onnx.ModelProto:
    """A user's graph where global ranking at 0.9 takes every weight from the small-scale MatMul."""
    rng = np.random.default_rng(1)
    w_conv = rng.uniform(0.5, 1.0, (16, 3, 3, 3)).astype(np.float32)  # 432 large weights
    w_mm = rng.uniform(-0.01, 0.01, (16 * 6 * 6, 4)).astype(np.float32)  # 2304 small ones, stored (in, out)
    nodes = [
        helper.make_node("Conv", ["x", "wc"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "wm"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "two_scales", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w_conv, "wc"), numpy_helper.from_array(w_mm, "wm")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_floor_and_refusal() -> None:
    model = two_scale_model()
    original = model.SerializeToString()
    with pytest.raises(UsageError, match="leaves layer wm with no weights"):
        prune_onnx(model, load_plan("unstructured:0.9", min_density=0))
    assert model.SerializeToString() == original  # refused before the graph was touched
    report = prune_onnx(model, load_plan("unstructured:0.9", min_density=0.02))
    wm = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "wm"))
    assert np.count_nonzero(wm) == floor_count(wm.size, 0.02) == 47
    assert report.real_sparsity == pytest.approx(0.9, abs=1 / 2736)
    assert report.summary()["density_min"]["layer"] == "wm"


def test_channel_zeroing_on_onnx_keeps_a_filter() -> None:
    """channel:0.9 of the MatMul's 4 outputs rounds to none kept; the floor counts filters and keeps one."""
    report = prune_onnx(two_scale_model(), load_plan("channel:0.9"))
    assert report.records["wm"].mask.any(axis=0).sum() == 1  # stored (in, out): one output column
    assert report.records["wc"].mask.reshape(16, -1).any(axis=1).sum() == 2  # round(0.1 * 16)
    with pytest.raises(UsageError, match="with no weights"):
        prune_onnx(two_scale_model(), load_plan("channel:0.9", min_density=0))


def test_per_layer_methods_are_capped_at_the_floor() -> None:
    assert layer_mask(np.arange(1000.0), 0.999, 0.01).sum() == 10
    assert layer_mask(np.arange(1000.0), 0.999).sum() == 1
    one_block = np.ones((4, 4))
    assert not block_mask(one_block, 0.9, (4, 4)).any()  # round(0.1 blocks) = 0
    assert block_mask(one_block, 0.9, (4, 4), 0.01).all()


def test_compile_summary_shows_the_density_extremes(tmp_path) -> None:
    from typer.testing import CliRunner

    from tridesign.cli.main import app

    onnx.save(two_scale_model(), tmp_path / "user.onnx")
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(tmp_path / "user.onnx"), "-o", str(tmp_path / "art"),
                                 "--prune", "unstructured:0.9", "--min-density", "0.02", "--json"])
    assert result.exit_code == 0, result.output
    sparsity = json.loads(result.stdout)["source"]["sparsity"]
    assert sparsity["spec"] == "unstructured:0.9 min_density=0.02"
    assert sparsity["density_min"] == {"layer": "wm", "density": round(47 / 2304, 6)}
    assert sparsity["density_max"]["layer"] == "wc" and sparsity["layers_at_min_density"] == ["wm"]
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["source"]["sparsity"] == sparsity
    assert manifest["options"]["prune"] == "unstructured:0.9 min_density=0.02"  # the floor is part of the config
    table = runner.invoke(app, ["compile", str(tmp_path / "user.onnx"), "-o", str(tmp_path / "art2"),
                                "--prune", "unstructured:0.9"])
    assert table.exit_code == 0, table.output
    assert "sparsest layer (density)" in table.stdout and "wm (0.010417)" in table.stdout
    assert "densest layer (density)" in table.stdout and "layers at --min-density 0.01" in table.stdout


def test_cli_refuses_a_collapse_and_bad_floors_in_one_line(cli, tmp_path) -> None:
    onnx.save(two_scale_model(), tmp_path / "user.onnx")
    base = ("compile", str(tmp_path / "user.onnx"), "-o", str(tmp_path / "art"))
    res = cli(*base, "--prune", "unstructured:0.9", "--min-density", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    error = [line for line in res.stderr.splitlines() if line.startswith("tridesign: error:")]
    assert len(error) == 1 and "leaves layer wm with no weights" in error[0] and "unstructured:S:layer" in error[0]
    assert not (tmp_path / "art").exists()
    for args, message in (
        (("--prune", "unstructured:0.9", "--min-density", "1.5"), "must be in [0, 1)"),
        (("--min-density", "0.02"), "give --prune too"),
    ):
        res = cli(*base, *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


# Property tests: the floor in the YAML grammar, and what global ranking with a floor guarantees.

floors = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)


@settings(deadline=None)
@given(floors, st.booleans())
def test_yaml_floor_round_trips_and_the_option_overrides_it(floor: float, override: bool) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.yaml"
        path.write_text(f"default: unstructured:0.8\nmin_density: {floor!r}\n")
        plan = load_plan(path, 0.5 if override else None)
    assert plan.min_density == (0.5 if override else floor)
    assert plan == SparsityPlan(Unstructured(0.8), source=str(path), min_density=plan.min_density)


@settings(deadline=None)
@given(st.one_of(st.floats(max_value=-5e-324), st.floats(min_value=1.0), st.just(float("nan")), st.text(max_size=8)))
def test_out_of_range_floors_are_one_line_usage_errors(value) -> None:
    if isinstance(value, str):
        try:
            if 0.0 <= float(value) < 1.0:
                return
        except ValueError:
            pass
    with pytest.raises(UsageError) as raised:
        load_plan("unstructured:0.8", value)
    assert "\n" not in str(raised.value)


layer_shapes = st.lists(
    st.tuples(st.integers(1, 60), st.floats(1e-3, 1e3)), min_size=1, max_size=5  # (size, magnitude scale)
)


@settings(deadline=None)
@given(layer_shapes, st.floats(0.0, 1.0, exclude_max=True), floors, st.integers(0, 2**16))
def test_global_floor_guarantees(layers, sparsity: float, floor: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = {f"l{i}": rng.random(size) * scale for i, (size, scale) in enumerate(layers)}
    masks = global_masks(scores, sparsity, floor)
    floors_ = {n: floor_count(s.size, floor) for n, s in scores.items()}
    for name, mask in masks.items():
        assert mask.sum() >= floors_[name]  # no layer below its floor
        kept, dropped = scores[name][mask], scores[name][~mask]
        assert not kept.size or not dropped.size or kept.min() >= dropped.max()  # its largest weights
    total = sum(s.size for s in scores.values())
    assert sum(m.sum() for m in masks.values()) == max(keep_count(total, sparsity), sum(floors_.values()))
    plain = global_masks(scores, sparsity)
    if all(plain[n].sum() >= floors_[n] for n in scores):  # the floor changes only what it must
        assert all(np.array_equal(plain[n], masks[n]) for n in scores)
