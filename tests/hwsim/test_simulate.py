import json
import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.annotations import DataSparsity
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting, apply_sparsity
from tridesign.hwsim.spec import load_spec, spec_from_dict
from tridesign.hwsim.workload import Workload, load_workload
from tridesign.sparsity_plan import Unstructured

GOLDEN = Path(__file__).parent / "golden" / "tiny_cnn_small.json"
GOLDEN_KEYS = ("compute_cycles", "stall_cycles", "cycles", "dram_bytes", "issued_macs")


def _golden_payload():
    out = {}
    for flow in ("ws", "os", "is"):
        result = simulate(load_workload(tiny_cnn()), small_system(), flow)
        out[flow] = {
            "layers": {r.name: {k: getattr(r, k) for k in GOLDEN_KEYS} for r in result.layers},
            "energy_per_frame": round(result.totals["energy_per_frame"], 3),
        }
    return out


def test_golden_tiny_cnn():
    """Regenerate with TRIDESIGN_REGOLD=1 after an intended model change (and say why in the commit)."""
    got = _golden_payload()
    if os.environ.get("TRIDESIGN_REGOLD"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert got == want


def test_golden_compute_cycles_are_the_closed_form():
    want = json.loads(GOLDEN.read_text())
    # conv1: M = 16*16, K = 27, N = 16 on 8x8, WS: Fc*Sr + Fr*Sc + Fr*Fc*(T + R - 2)
    assert want["ws"]["layers"]["conv1"]["compute_cycles"] == 2 * 27 + 4 * 16 + 4 * 2 * (256 + 8 - 2)
    # relu: 16*16*16 ops on 8 lanes
    assert want["ws"]["layers"]["relu1"]["compute_cycles"] == 16 * 16 * 16 // 8


def _workload(density=1.0, tiles=1.0, frames=1.0):
    wl = load_workload(tiny_cnn())
    if density < 1.0:
        wl = apply_sparsity(wl, SparsitySetting(Unstructured(1 - density)))
    return Workload(wl.name, wl.layers, DataSparsity(active_tile_fraction=tiles, frame_keep_fraction=frames))


SKIPPING = {"weight_skipping": True, "tile_skipping": True, "frame_skipping": True}


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 32), cols=st.integers(2, 32), sram=st.sampled_from([1, 4, 64]),
    flow=st.sampled_from(["ws", "os", "is"]), density=st.floats(0.05, 1.0), tiles=st.floats(0.1, 1.0),
)
@example(rows=8, cols=16, sram=1, flow="ws", density=0.875, tiles=1.0)  # compressed weights > dense ones
def test_properties(rows, cols, sram, flow, density, tiles):
    system = small_system(array_rows=rows, array_cols=cols, ifmap_sram_kib=sram, filter_sram_kib=sram,
                          ofmap_sram_kib=sram, sparsity=SKIPPING)
    dense = simulate(_workload(), system, flow)
    sparse = simulate(_workload(density, tiles), system, flow)
    for result in (dense, sparse):
        t = result.totals
        assert 0 <= t["util_effective"] <= t["util_dense_equiv"] <= 1
        for r in result.layers:
            assert 0 <= r.util_effective <= r.util_dense_equiv <= 1
            assert r.compute_cycles * rows * cols >= r.useful_macs
            assert r.cycles >= r.compute_cycles
    assert sparse.totals["cycles"] <= dense.totals["cycles"]
    assert sparse.totals["compute_cycles"] <= dense.totals["compute_cycles"]


def test_energy_grows_with_traffic():
    wl = _workload()
    small = simulate(wl, small_system(ifmap_sram_kib=1, filter_sram_kib=1, ofmap_sram_kib=1))
    large = simulate(wl, small_system(ifmap_sram_kib=256, filter_sram_kib=256, ofmap_sram_kib=256))
    assert small.totals["dram_bytes"] > large.totals["dram_bytes"]
    assert small.totals["energy_per_frame"] > large.totals["energy_per_frame"]


def test_slow_dram_stalls():
    wl = _workload()
    fast = simulate(wl, small_system(dram_gbps=100))
    slow = simulate(wl, small_system(dram_gbps=0.05))
    assert slow.totals["compute_cycles"] == fast.totals["compute_cycles"]
    assert slow.totals["stall_cycles"] > fast.totals["stall_cycles"]


def test_sparsity_needs_hardware_support():
    sparse = _workload(0.2, 0.5, 0.5)
    plain = simulate(sparse, small_system())
    dense = simulate(_workload(), small_system())
    assert plain.totals["compute_cycles"] == dense.totals["compute_cycles"]
    skipping = simulate(sparse, small_system(sparsity=SKIPPING))
    assert skipping.totals["compute_cycles"] < 0.7 * dense.totals["compute_cycles"]
    assert skipping.totals["effective_fps"] == pytest.approx(2 * skipping.totals["fps"])
    assert skipping.totals["util_effective"] < skipping.totals["util_dense_equiv"]


def test_pipeline_stages_frame_interval_and_link():
    base = small_system().model_dump()
    data = {**base, "devices": {"a": base["devices"]["d"], "b": base["devices"]["d"]},
            "stages": [{"name": "front", "device": "a", "match": "conv1|relu1|pool1"},
                       {"name": "back", "device": "b"}]}
    system = spec_from_dict(data)
    result = simulate(_workload(), system)
    front, back = result.stages
    assert {r.stage for r in result.layers} == {"front", "back"}
    assert result.totals["frame_interval_ms"] == pytest.approx(max(front.latency_ms, back.latency_ms))
    assert result.totals["latency_ms"] == pytest.approx(front.latency_ms + back.latency_ms + back.link_ms)
    assert back.link_bytes == 16 * 8 * 8 * 2 and front.link_bytes == 0  # pool1's output crosses


def test_presets_run_and_report_units():
    wl = _workload()
    for name in ("eyeriss-like", "tpu-like", "zynq-ultrascale"):
        result = simulate(wl, load_spec(name))
        assert result.totals["cycles"] > 0 and result.totals["area_mm2"] > 0
    assert simulate(wl, load_spec("eyeriss-like")).totals["power_w"] is None  # MAC units, not joules
