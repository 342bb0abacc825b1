import json
import time

import onnx
import pytest

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.errors import UsageError
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting
from tridesign.hwsim.sweep import grid, run_sweep, sweep_front
from tridesign.hwsim.workload import load_workload
from tridesign.sparsity_plan import Unstructured


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("hwsim") / "tiny.onnx"
    onnx.save(tiny_cnn(), path)
    return path


def test_simulate_cli_outputs(cli, tiny_onnx, tmp_path):
    art = tmp_path / "artifact"
    art.mkdir()
    (art / "model.onnx").write_bytes(tiny_onnx.read_bytes())
    res = cli("simulate", str(art), "--arch", "eyeriss-like", "--dataflow", "os", "--json",
              "--csv", str(tmp_path / "l.csv"), "--report", str(tmp_path / "r.html"), "--trace", str(tmp_path / "t.trace"), "--check-pe")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["dataflow"] == "os" and payload["arch"] == "eyeriss-like"
    assert payload["totals"]["cycles"] == sum(layer["cycles"] for layer in payload["layers"])
    assert (tmp_path / "l.csv").read_text().count("\n") == len(payload["layers"]) + 1
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Roofline" in html
    assert (tmp_path / "t.trace").read_text().startswith("0x")
    checked = {c["layer"] for c in payload["pe_check"] if c["agree"] and c["values_ok"]}
    assert {"conv1", "fc"} <= checked


def test_simulate_cli_user_errors(cli, tiny_onnx):
    res = cli("simulate", str(tiny_onnx), "--arch", "no-such-arch")
    assert res.returncode == 2 and "unknown arch" in res.stderr and "Traceback" not in res.stderr
    res = cli("simulate", "missing.onnx")  # a missing file exits 1 in every command (tridesign.artifact.open_source)
    assert res.returncode == 1 and "missing.onnx: no such file" in res.stderr and "Traceback" not in res.stderr


def test_sweep_cli_pareto(cli, tiny_onnx, tmp_path):
    res = cli("sweep", str(tiny_onnx), "--arch", "eyeriss-like", "--param", "array_rows=4,16",
              "--param", "sparsity.weight_skipping=true", "--weights", "dense", "--weights", "nm:2:4",
              "--dataflow", "ws", "--dataflow", "os", "--json", "-o", str(tmp_path / "s.json"),
              "--report", str(tmp_path / "s.html"), "--workers", "2")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert len(payload["points"]) == 2 * 2 * 2
    assert payload == json.loads((tmp_path / "s.json").read_text())
    assert "Pareto" in (tmp_path / "s.html").read_text()


def test_sweep_cli_what_if_errors_are_prune_errors(cli, tiny_onnx):
    res = cli("sweep", str(tiny_onnx), "--weights", "nm:5:4")
    assert res.returncode == 2 and "N:M spec 'nm:5:4' needs N <= M" in res.stderr and "Traceback" not in res.stderr


def test_pareto_front_definition():
    rows = [{"latency_ms": 1, "energy_per_input_frame": 5, "area_mm2": 1},
            {"latency_ms": 2, "energy_per_input_frame": 2, "area_mm2": 1},
            {"latency_ms": 2, "energy_per_input_frame": 6, "area_mm2": 1},  # dominated by 0
            {"latency_ms": 3, "energy_per_input_frame": 1, "area_mm2": 9}]
    assert sweep_front(rows) == [0, 1, 3]


def test_sweep_local_pool_matches_serial():
    wl = load_workload(tiny_cnn())
    points = grid({"array_rows": [4, 8], "sparsity.weight_skipping": [True]}, ["ws", "is"],
                  [SparsitySetting(), SparsitySetting(Unstructured(0.5), 0.5)])
    serial = run_sweep(wl, small_system(), points, "serial")
    pooled = run_sweep(wl, small_system(), points, "local", workers=2)
    assert serial == pooled and len(serial) == 8
    with pytest.raises(UsageError):
        grid({"sram_kb": [1]}, [], [])


def test_sweep_ray_local_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        wl = load_workload(tiny_cnn())
        points = grid({"array_cols": [4, 8]}, ["ws"], [SparsitySetting()])
        assert run_sweep(wl, small_system(), points, "ray") == run_sweep(wl, small_system(), points, "serial")
    finally:
        ray.shutdown()


def test_resnet18_224_simulates_within_2s(resnet18):
    from tridesign.hwsim.spec import spec_from_dict

    system = spec_from_dict({"version": 1, "name": "32x32", "devices": {"d": dict(
        array_rows=32, array_cols=32, clock_mhz=200, ifmap_sram_kib=256, filter_sram_kib=256, ofmap_sram_kib=128,
        dram_gbps=10)}})
    start = time.perf_counter()
    result = simulate(resnet18, system)
    elapsed = time.perf_counter() - start
    assert elapsed <= 2.0
    assert result.totals["macs"] == pytest.approx(1.814e9, rel=0.01)  # ResNet-18 at 224x224
    assert sum(1 for r in result.layers if r.op_type == "Conv") == 20


def test_a_sweep_too_large_to_run_is_refused_with_its_estimate():
    from tridesign.errors import UsageError

    with pytest.raises(UsageError, match="1,000,000 points .* narrow the --param lists"):
        grid({"array_rows": list(range(1, 1001)), "array_cols": list(range(1, 1001))}, [], [])
