import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.errors import UsageError
from tridesign.hwsim.energy import device_area_mm2, load_table
from tridesign.hwsim.memory import write_dram_trace
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting, apply_sparsity, parse_what_if, weight_bytes
from tridesign.hwsim.workload import load_workload
from tridesign.sparsity_plan import load_plan, parse_method

SKIP = {"weight_skipping": True, "index_bits": 4}


def _layer(setting, name):
    wl = apply_sparsity(load_workload(tiny_cnn()), SparsitySetting(parse_what_if(setting)))
    return next(l for l in wl.layers if l.name == name)


def _conv2(setting):
    return _layer(setting, "conv2")


def test_nm_masks_are_exact_per_group():
    """Groups of 4 input channels at each (out, kh, kw), as the compiler prunes a conv for TensorRT."""
    layer = _conv2("nm:2:4")
    assert layer.kernel_elems == 9
    by_position = layer.weight_mask.reshape(32, 16, 9).transpose(0, 2, 1)  # (out, kh*kw, in)
    assert (by_position.reshape(32, 9, 4, 4).sum(axis=3) == 2).all() and layer.weight_density == 0.5
    assert layer.weight_pattern == "nm:2:4"


def test_nm_what_if_keeps_two_of_a_three_channel_stem_and_groups_a_gemm_along_k():
    stem = _layer("nm:2:4", "conv1")  # 3 input channels: one short group per kernel position
    assert (stem.weight_mask.reshape(16, 3, 9).sum(axis=1) == 2).all()
    assert stem.weight_density == pytest.approx(2 / 3)
    fc = _layer("nm:2:4", "fc")
    assert fc.kernel_elems == 1 and (fc.weight_mask.reshape(10, 8, 4).sum(axis=2) == 2).all()


@pytest.mark.parametrize("spec", ["nm:2:4", "nm:1:8"])
def test_nm_what_if_matches_the_compiler_layout(spec):
    """The what-if mask of a conv is N:M where the compiler's pruned mask is (`is_nm`)."""
    from tridesign.compiler.sparsity.prune_fns import is_nm

    n, m = parse_method(spec).n, parse_method(spec).m
    layer = _conv2(spec)
    assert is_nm(layer.weight_mask.reshape(32, 16, 3, 3), n, m)
    assert layer.weight_density == pytest.approx(n / m)


def test_block_and_unstructured_and_pattern():
    assert _conv2("unstructured:0.75").weight_density == pytest.approx(0.25, abs=0.01)
    block = _conv2("block:0.5:4x4")
    tiles = block.weight_mask.reshape(8, 4, 36, 4).any(axis=(1, 3))
    full = block.weight_mask.reshape(8, 4, 36, 4).all(axis=(1, 3))
    assert (tiles == full).all()  # whole blocks kept or dropped
    pat = _conv2("pattern:4:0.9")
    per_kernel = pat.weight_mask.reshape(-1, 9).sum(axis=1)
    assert set(np.unique(per_kernel)) <= {0, 4, 5, 6, 7, 8, 9}
    assert (per_kernel == 4).mean() > 0.3  # most kernels became a 4-of-9 pattern


def test_bad_setting_is_a_usage_error():
    with pytest.raises(UsageError):
        _conv2("nm:two:4")


@pytest.mark.parametrize("text", ["nm:5:4", "nm:two:4", "unstructured:1", "block:0.5:0x4", "pattern:3:0.9", "sideways:0.5"])
def test_what_ifs_reject_what_prune_rejects_with_the_same_line(text):
    with pytest.raises(UsageError) as prune:
        parse_method(text)
    with pytest.raises(UsageError) as what_if:
        parse_what_if(text)
    assert str(what_if.value) == str(prune.value) and "\n" not in str(prune.value)


@given(st.text(alphabet=st.sampled_from("unstrcdblokmpa0123456789:.x-e "), max_size=20))
def test_what_ifs_read_any_text_as_prune_does(text):
    """Outside `dense` and the two deprecated spellings, a what-if is exactly a --prune SPEC."""
    try:
        want = parse_method(text)
    except UsageError as err:
        want = str(err)
    try:
        got = parse_what_if(text)
    except UsageError as err:
        got = str(err)
    if text.strip() != "dense" and not re.fullmatch(r"\s*(block:[0-9]+x[0-9]+|pattern3x3):.*", text):
        assert got == want


@pytest.mark.parametrize("text", ["channel:0.5", "zograsp:0.9"])
def test_what_ifs_refuse_methods_that_need_the_model(text):
    with pytest.raises(UsageError, match="cannot be drawn"):
        SparsitySetting(parse_what_if(text))


@pytest.mark.parametrize(("old", "new"), [("block:4x4:0.5", "block:0.5:4x4"), ("block:2x8:0.75", "block:0.75:2x8"),
                                          ("pattern3x3:0.9", "pattern:4:0.9"), ("dense", "none")])
def test_old_what_if_spellings_read_as_the_new_ones_and_draw_the_same_masks(old, new, capsys):
    assert parse_what_if(old) == parse_what_if(new) == parse_method(new)
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == (0 if old == "dense" else 1)
    assert all(f"{old} is deprecated; write {new}" in n for n in notes)
    wl = load_workload(tiny_cnn())
    for a, b in zip(apply_sparsity(wl, SparsitySetting(parse_what_if(old)), seed=3).layers,
                    apply_sparsity(wl, SparsitySetting(parse_what_if(new)), seed=3).layers):
        assert (a.weight_mask is None) == (b.weight_mask is None)
        assert a.weight_mask is None or (a.weight_mask == b.weight_mask).all()
        assert a.weight_pattern == b.weight_pattern


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
    prune_onnx(model, load_plan(spec))
    wl = load_workload(model)
    conv2 = next(l for l in wl.layers if l.name == "conv2")
    assert conv2.weight_pattern.startswith(pattern) and conv2.weight_density < 0.9
    dense = simulate(load_workload(tiny_cnn()), small_system(sparsity=SKIP))
    sparse = simulate(wl, small_system(sparsity=SKIP))
    plain = simulate(wl, small_system())
    assert sparse.totals["compute_cycles"] < dense.totals["compute_cycles"] == plain.totals["compute_cycles"]
    assert sparse.totals["useful_macs"] < dense.totals["useful_macs"]
