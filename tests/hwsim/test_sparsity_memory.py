import re

import numpy as np
import pytest

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.errors import UsageError
from tridesign.hwsim.energy import device_area_mm2, load_table
from tridesign.hwsim.memory import write_dram_trace
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting, apply_sparsity, weight_bytes
from tridesign.hwsim.workload import load_workload

SKIP = {"weight_skipping": True, "index_bits": 4}


def _conv2(setting):
    wl = apply_sparsity(load_workload(tiny_cnn()), SparsitySetting(setting))
    return next(l for l in wl.layers if l.name == "conv2")


def test_nm_masks_are_exact_per_group():
    layer = _conv2("nm:2:4")
    groups = layer.weight_mask.reshape(32, -1, 4).sum(axis=2)
    assert (groups == 2).all() and layer.weight_density == 0.5
    assert layer.weight_pattern == "nm:2:4"


def test_block_and_unstructured_and_pattern():
    assert _conv2("unstructured:0.75").weight_density == pytest.approx(0.25, abs=0.01)
    block = _conv2("block:4x4:0.5")
    tiles = block.weight_mask.reshape(8, 4, 36, 4).any(axis=(1, 3))
    full = block.weight_mask.reshape(8, 4, 36, 4).all(axis=(1, 3))
    assert (tiles == full).all()  # whole blocks kept or dropped
    pat = _conv2("pattern3x3:0.9")
    per_kernel = pat.weight_mask.reshape(-1, 9).sum(axis=1)
    assert set(np.unique(per_kernel)) <= {0, 4, 5, 6, 7, 8, 9}
    assert (per_kernel == 4).mean() > 0.3  # most kernels became a 4-of-9 pattern


def test_bad_setting_is_a_usage_error():
    with pytest.raises(UsageError):
        _conv2("nm:two:4")


def test_metadata_overhead_by_format():
    device = small_system(sparsity=SKIP).devices["d"]
    nm = _conv2("nm:2:4")
    values, meta = weight_bytes(nm, device)
    nnz = nm.filter_elems * 0.5
    assert values == nnz * 2 and meta == nnz * 2 / 8  # log2(4) = 2 bits a value
    un = _conv2("unstructured:0.5")
    values, meta = weight_bytes(un, device)
    assert meta == pytest.approx((un.filter_elems * un.weight_density * 4 + 32 * 32) / 8)
    no_skip = small_system().devices["d"]
    assert weight_bytes(un, no_skip) == (un.filter_elems * 2, 0.0)


def test_dram_trace_is_ramulator_format(tmp_path):
    result = simulate(load_workload(tiny_cnn()), small_system(ifmap_sram_kib=1, ofmap_sram_kib=1))
    path = tmp_path / "dram.trace"
    n = write_dram_trace([(r.name, r.traffic) for r in result.layers], path)
    lines = path.read_text().splitlines()
    assert len(lines) == n > 0
    assert all(re.fullmatch(r"0x[0-9a-f]+ [RW]", line) for line in lines)
    reads = sum(line.endswith("R") for line in lines)
    want = sum(np.ceil(b / 64) for r in result.layers for b in r.traffic.dram_read.values())
    assert reads == want
    assert write_dram_trace([(r.name, r.traffic) for r in result.layers], path, max_lines=10) == 10


def test_energy_tables_and_area():
    for name in ("horowitz45", "eyeriss-normalized"):
        table = load_table(name)
        assert table.sources and table.dram_pj_per_byte > table.sram_pj_per_byte > table.reg_pj_per_byte
    with pytest.raises(UsageError):
        load_table("nope")
    area = device_area_mm2(small_system().devices["d"])
    assert area["pe_array"] == pytest.approx(64 * load_table("horowitz45").pe_mm2)


def test_user_energy_table(tmp_path):
    text = (load_table("horowitz45").model_dump_json())
    user = tmp_path / "mine.yaml"
    import json

    data = json.loads(text) | {"name": "mine", "dram_pj_per_byte": 1000.0}
    import yaml

    user.write_text(yaml.safe_dump(data))
    wl = load_workload(tiny_cnn())
    base = simulate(wl, small_system())
    mine = simulate(wl, small_system(energy_table=str(user)))
    assert mine.totals["energy.dram.ifmap"] == pytest.approx(base.totals["energy.dram.ifmap"] * 1000 / 244)


@pytest.mark.parametrize("spec,pattern", [("nm:2:4", "nm:2:4"), ("pattern:4:0.9", "pattern3x3"), ("block:0.5:4x4", "block:4x4")])
def test_compiler_pruned_graph_drives_the_simulation(spec, pattern):
    """The annotations the compiler's pruning pass writes are what the simulator reads."""
    from tridesign.compiler.sparsity.onnx_prune import prune_onnx

    model = tiny_cnn()
    prune_onnx(model, spec)
    wl = load_workload(model)
    conv2 = next(l for l in wl.layers if l.name == "conv2")
    assert conv2.weight_pattern.startswith(pattern) and conv2.weight_density < 0.9
    dense = simulate(load_workload(tiny_cnn()), small_system(sparsity=SKIP))
    sparse = simulate(wl, small_system(sparsity=SKIP))
    plain = simulate(wl, small_system())
    assert sparse.totals["compute_cycles"] < dense.totals["compute_cycles"] == plain.totals["compute_cycles"]
    assert sparse.totals["useful_macs"] < dense.totals["useful_macs"]
