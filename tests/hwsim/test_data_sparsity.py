"""Measured data sparsity: per-layer active-tile fractions, the preset's stages on the zoo's
detectors, and `simulate` on a `tridesign track` output directory."""

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from pydantic import ValidationError

from tests.hwsim.conftest import graph_model, small_system, weight
from tridesign.annotations import DataSparsity, read_data_sparsity, write_data_sparsity
from tridesign.artifact import TRACK_KIND, TRACK_MODEL, TRACK_SUMMARY, open_source
from tridesign.errors import TridesignError, UsageError
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import load_spec, spec_from_dict
from tridesign.hwsim.workload import Workload, load_workload

TILE_SKIPPING = {"tile_skipping": True, "frame_skipping": True}
HW, TILE = 16, 4  # 16x16 feature maps, 4x4-pixel tiles: a 4x4 grid of tiles


def _three_convs() -> onnx.ModelProto:
    """conv1 (3->8, 3x3) -> relu1 -> conv2 (8->16, 3x3) -> relu2 -> conv3 (16->4, 1x1), all 16x16."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, HW, HW])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["y"], name="conv3"),
    ]
    return graph_model(nodes, [x], [y], [weight("w1", (8, 3, 3, 3)), weight("w2", (16, 8, 3, 3)), weight("w3", (4, 16, 1, 1))])


def _with(record: DataSparsity) -> Workload:
    model = _three_convs()
    write_data_sparsity(model, record)
    return load_workload(model, name="three")


def test_old_records_load_and_fractions_are_checked():
    old = '{"tile_px": 60, "active_tile_fraction": 0.8, "frame_keep_fraction": 0.6, "source": "paper"}'
    record = DataSparsity.model_validate_json(old)
    assert record.layer_active_fraction == {} and record.active_tile_fraction == 0.8
    with pytest.raises(ValidationError):
        DataSparsity(layer_active_fraction={"conv1": 1.5})


def test_per_layer_fractions_against_an_independent_count():
    """Each listed conv computes exactly its active tiles' output pixels (counted from a tile mask);
    the unlisted conv is dense although the record's summary fraction is 0.9; each ReLU works on
    its producer's tiles."""
    rng = np.random.default_rng(3)
    masks = {name: np.zeros(16, bool) for name in ("conv1", "conv2")}
    masks["conv1"][rng.choice(16, 4, replace=False)] = True  # 4 of 16 tiles active
    masks["conv2"][rng.choice(16, 10, replace=False)] = True
    fractions = {name: float(m.mean()) for name, m in masks.items()}
    record = DataSparsity(tile_px=TILE, active_tile_fraction=0.9, layer_active_fraction=fractions, source="test")
    result = simulate(_with(record), small_system(sparsity=TILE_SKIPPING))
    by_name = {r.name: r for r in result.layers}

    def active_pixels(name: str) -> int:
        grid = masks[name].reshape(HW // TILE, HW // TILE)
        return int(np.kron(grid, np.ones((TILE, TILE), int)).sum())

    assert by_name["conv1"].useful_macs == active_pixels("conv1") * (3 * 9) * 8
    assert by_name["conv2"].useful_macs == active_pixels("conv2") * (8 * 9) * 16
    assert by_name["conv3"].useful_macs == HW * HW * 16 * 4  # not listed: dense
    lanes = 8
    assert by_name["relu1"].compute_cycles == math.ceil(active_pixels("conv1") * 8 / lanes)
    assert by_name["relu2"].compute_cycles == math.ceil(active_pixels("conv2") * 16 / lanes)
    assert result.data_sparsity == record and result.notes == []


def test_a_record_without_layers_applies_everywhere_and_a_foreign_one_is_refused():
    everywhere = simulate(_with(DataSparsity(active_tile_fraction=0.5)), small_system(sparsity=TILE_SKIPPING))
    assert [r.useful_macs for r in everywhere.layers if r.op_type == "Conv"] == [128 * 27 * 8, 128 * 72 * 16, 128 * 16 * 4]
    plain = simulate(_with(DataSparsity(active_tile_fraction=0.5)), small_system())
    assert plain.layers[0].useful_macs == 256 * 27 * 8 and plain.notes == ["arch small skips no tiles: the record's inactive tiles are computed anyway"]
    with pytest.raises(TridesignError, match=r"names 1 layer\(s\) that three does not have \(first: /layer9/Conv\)"):
        simulate(_with(DataSparsity(layer_active_fraction={"/layer9/Conv": 0.5})), small_system())


@pytest.fixture(scope="module")
def center_onnx() -> onnx.ModelProto:
    """The tracker's detector (tiny config), exported as the compiler exports it."""
    from tridesign.compiler.export import torch_to_onnx
    from tridesign.models.video_detector import build_center_detector

    inputs = {"image": np.zeros((1, 3, 64, 96), np.float32), "patch_mask": np.ones((1, 1, 4, 6), np.float32)}
    return torch_to_onnx(build_center_detector("tiny"), inputs, ("heatmap", "boxes"))


def _conv_stages(workload: Workload) -> dict[str, int]:
    result = simulate(workload, load_spec("tridesign-alveo"))
    assert result.notes == []
    return {s.name: sum(1 for r in result.layers if r.stage == s.name and r.op_type == "Conv") for s in result.stages}


def test_alveo_stages_match_the_zoo_detectors(center_onnx, tmp_path):
    """Backbone on the first card, FPN + RPN (or the tracker's head) on the second: by node name."""
    from tridesign.compiler.export import export_model

    export_model("qdtrack_detector", "tiny", tmp_path / "det.onnx")
    # Both on ResNet-18 (stem + 8 blocks x 2 convs + 3 projections). The detector: FPN 4 lateral + 4
    # output convs, RPN conv/cls/reg on 5 levels; the tracker's: P2's output conv only, head 3 convs.
    assert _conv_stages(load_workload(tmp_path / "det.onnx")) == {"backbone": 1 + 16 + 3, "fpn_rpn": 8 + 3 * 5}
    assert _conv_stages(load_workload(center_onnx)) == {"backbone": 1 + 16 + 3, "fpn_rpn": 4 + 1 + 3}


def test_stage_rules_unmatched_refused_idle_noted():
    base = small_system().model_dump()
    data = base | {"devices": {"a": base["devices"]["d"], "b": base["devices"]["d"]}}
    wl = _with(DataSparsity())
    only_convs = spec_from_dict(data | {"stages": [{"name": "s", "device": "a", "match": "^conv"}, {"name": "t", "device": "b", "match": "^pool"}]})
    with pytest.raises(UsageError, match=r"arch small: 2 of 5 layers of three match no stage \(first: relu1\)"):
        simulate(wl, only_convs)
    idle = spec_from_dict(data | {"stages": [{"name": "s", "device": "a", "match": "^backbone"}, {"name": "t", "device": "b"}]})
    assert simulate(wl, idle).notes == ["stage s (a) of small receives no layer of three: its match '^backbone' finds no node name"]
    with pytest.raises(UsageError, match="not a regular expression"):
        spec_from_dict(data | {"stages": [{"name": "s", "device": "a", "match": "("}]})


def _track_dir(tmp_path, model: onnx.ModelProto, record: DataSparsity | None):
    out = tmp_path / "track-out"
    out.mkdir()
    if record is not None:
        write_data_sparsity(model, record)
    onnx.save(model, out / TRACK_MODEL)
    (out / TRACK_SUMMARY).write_text(json.dumps({"kind": TRACK_KIND, "version": 1, "frames": 10, "kept_frames": 6}))
    return out


def test_simulate_reads_a_track_output_directory(cli, center_onnx, tmp_path):
    model = onnx.ModelProto()
    model.CopyFrom(center_onnx)
    backbone = [n.name for n in model.graph.node if n.op_type == "Conv" and not n.name.startswith(("/neck/", "/head/"))]
    fractions = {name: 0.5 + 0.4 * i / len(backbone) for i, name in enumerate(backbone)}
    source = "measured by tridesign track on synth-7.mp4: frame drop 0.4, patch drop 0.2 of 60px patches"
    record = DataSparsity(tile_px=60, active_tile_fraction=0.8, frame_keep_fraction=0.6,
                          layer_active_fraction=fractions, source=source)
    out = _track_dir(tmp_path, model, record)
    assert read_data_sparsity(onnx.load(out / TRACK_MODEL)) == record

    res = cli("simulate", str(out), "--arch", "tridesign-alveo", "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    t = payload["totals"]
    assert payload["workload"] == "track-out" and payload["data_sparsity"]["source"] == source and payload["notes"] == []
    assert t["effective_fps"] == pytest.approx(t["fps"] / 0.6) and t["fps"] == pytest.approx(1e3 / t["frame_interval_ms"])
    assert t["energy_per_input_frame_j"] == pytest.approx(0.6 * t["energy_per_frame_j"])
    rows = {row["name"]: row for row in payload["layers"]}
    for layer in load_workload(center_onnx).layers:  # listed: the active pixels (rounded up); the FPN and head dense
        if layer.op_type == "Conv":
            pixels = math.ceil(layer.M * fractions.get(layer.name, 1.0))
            assert rows[layer.name]["useful_macs"] == pixels * layer.K * layer.N * layer.groups
    dense = simulate(load_workload(center_onnx), load_spec("tridesign-alveo"))
    assert t["frame_interval_ms"] < dense.totals["frame_interval_ms"]

    table = cli("simulate", str(out), "--arch", "tridesign-alveo")
    assert table.returncode == 0, table.stderr
    assert "data sparsity from" in table.stdout and "synth-7.mp4" in table.stdout and "energy / input frame J" in table.stdout


def test_track_directories_are_refused_where_they_do_not_fit(cli, center_onnx, tmp_path):
    out = _track_dir(tmp_path, center_onnx, None)
    res = cli("simulate", str(out))
    assert res.returncode == 1 and "carries no tridesign.data_sparsity record" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(UsageError, match="got a track output directory"):
        open_source(out)  # the default kinds: compile, deploy, ... take no track output
    (out / TRACK_MODEL).unlink()
    with pytest.raises(TridesignError, match="track output without detector.onnx"):
        open_source(out, allow=("track",))
    (out / TRACK_SUMMARY).write_text(json.dumps({"kind": "demo"}))  # another command's summary.json
    with pytest.raises(TridesignError, match="has no model.onnx; not a tridesign artifact"):
        open_source(out, allow=("track",))
