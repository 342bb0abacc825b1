"""Board power: the tegrastats parser on lines recorded on real boards, the INA3221 reader on a fake
sysfs tree, the sampler on a fake `tegrastats` executable and on that tree."""

from __future__ import annotations

import ast
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tridesign.board.power import PowerError, PowerSampler, parse_tegrastats, read_ina3221

BOARD = Path(__file__).resolve().parents[2] / "tridesign" / "board"

# Orin Nano 8GB, JetPack 6 (kernel 5.15.148-tegra): two lines recorded on the board, verbatim from
# henrygd/beszel, agent/gpu_test.go (TestParseJetsonData, cases "more valid data" and "orin nano").
ORIN_NANO_LOAD = (
    "11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
    "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@53.968C soc2@52.437C soc0@50.75C "
    "gpu@53.343C tj@53.968C soc1@51.656C VDD_IN 12479mW/12479mW VDD_CPU_GPU_CV 4667mW/4667mW "
    "VDD_SOC 2817mW/2817mW"
)
ORIN_NANO_IDLE = (
    "06-18-2025 11:25:24 RAM 3452/7620MB (lfb 25x4MB) SWAP 1518/16384MB (cached 174MB) "
    "CPU [1%@1420,2%@1420,0%@1420,2%@1420,2%@729,1%@729] GR3D_FREQ 0% cpu@50.031C soc2@49.031C "
    "soc0@50C gpu@49.031C tj@50.25C soc1@50.25C VDD_IN 4824mW/4824mW VDD_CPU_GPU_CV 518mW/518mW "
    "VDD_SOC 1475mW/1475mW"
)
# AGX Orin dev kit, JetPack 7.2 (L4T R39.2), three figures per rail: verbatim from
# rbonghi/jetson_stats, jtop/tests/test_06_tegra_parse.py (TEGRASTATS_ORIN_JP7).
AGX_ORIN_JP7 = (
    "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) "
    "CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,27%@2201] "
    "EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off "
    "NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C "
    "VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW"
)
# AGX Orin, JetPack 5 (sudo tegrastats): rails, temperatures and clocks verbatim from the recorded line
# in rbonghi/jetson_stats, tests/tegrastats ("Jetson Orin (SUDO)"); that emulator randomises the CPU
# and GR3D loads, written here as 0%.
AGX_ORIN_JP5 = (
    "01-03-2023 16:07:54 RAM 2257/30536MB (lfb 5392x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@204 GR3D_FREQ 0%@0 GR3D2_FREQ 0%@0 NVJPG1 729 VIC_FREQ 115 APE 233 CV0@-256C CPU@41.437C "
    "Tboard@29C SOC2@39.062C Tdiode@30.75C SOC0@39.031C CV1@-256C GPU@-256C tj@41.656C SOC1@38.937C CV2@-256C "
    "VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 796mW/796mW VIN_SYS_5V0 3522mW/3522mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)
# AGX Xavier, JetPack 4.2: verbatim from the tegrastats log posted in martinkersner/gtop pull request #7
# (comment of 2019-06-17).
AGX_XAVIER_JP42 = (
    "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) "
    "CPU [0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% "
    "AO@30C GPU@30.5C Tboard@31C Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C "
    "GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306"
)
# AGX Xavier (sudo tegrastats): rails verbatim from rbonghi/jetson_stats, tests/tegrastats ("Jetson
# Xavier (SUDO)"); the emulator's randomised CPU and GR3D loads written as 0%.
AGX_XAVIER_SUDO = (
    "RAM 408/15823MB (lfb 3702x4MB) SWAP 0/7911MB (cached 0MB) "
    "CPU [0%@2265,0%@2265,0%@2265,0%@2265,0%@2265,0%@2265,0%@2265,0%@2265] EMC_FREQ 0%@2133 "
    "GR3D_FREQ 0%@1377 APE 150 MTS fg 0% bg 0% AO@26.5C GPU@28C iwlwifi@30C Tdiode@31.25C PMIC@100C "
    "AUX@27C CPU@28C thermal@27.45C Tboard@27C GPU 1155/1155 CPU 385/385 SOC 2502/2502 CV 0/0 "
    "VDDRQ 192/192 SYS5V 2692/2692"
)
# Xavier NX, JetPack 4: no recorded line was found; constructed from the documented JetPack 4 format
# (rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC, mW without unit).
XAVIER_NX_CONSTRUCTED = (
    "RAM 2673/7765MB (lfb 118x4MB) SWAP 0/3883MB (cached 0MB) CPU [12%@1190,8%@1190,4%@1190,off,off,off] "
    "EMC_FREQ 7% GR3D_FREQ 33% AO@35C GPU@33C PMIC@100C AUX@33.5C CPU@35C thermal@33.9C "
    "VDD_IN 3785/3785 VDD_CPU_GPU_CV 519/519 VDD_SOC 1197/1197"
)


@pytest.mark.parametrize("line, expected", [
    (ORIN_NANO_LOAD, {"VDD_IN": 12479.0, "VDD_CPU_GPU_CV": 4667.0, "VDD_SOC": 2817.0, "total_mw": 12479.0}),
    (ORIN_NANO_IDLE, {"VDD_IN": 4824.0, "VDD_CPU_GPU_CV": 518.0, "VDD_SOC": 1475.0, "total_mw": 4824.0}),
    (AGX_ORIN_JP7, {"VDD_GPU_SOC": 5139.0, "VDD_CPU_CV": 3268.0, "VIN_SYS_5V0": 5500.0, "total_mw": 13907.0}),
    (AGX_ORIN_JP5, {"VDD_GPU_SOC": 2390.0, "VDD_CPU_CV": 796.0, "VIN_SYS_5V0": 3522.0,
                    "VDDQ_VDD2_1V8AO": 301.0, "total_mw": 7009.0}),
    (AGX_XAVIER_JP42, {"GPU": 463.0, "CPU": 618.0, "SOC": 2936.0, "CV": 0.0, "VDDRQ": 309.0, "SYS5V": 3306.0,
                       "total_mw": 7632.0}),
    (AGX_XAVIER_SUDO, {"GPU": 1155.0, "CPU": 385.0, "SOC": 2502.0, "CV": 0.0, "VDDRQ": 192.0, "SYS5V": 2692.0,
                       "total_mw": 6926.0}),
    (XAVIER_NX_CONSTRUCTED, {"VDD_IN": 3785.0, "VDD_CPU_GPU_CV": 519.0, "VDD_SOC": 1197.0, "total_mw": 3785.0}),
], ids=["orin-nano-load", "orin-nano-idle", "agx-orin-jp7", "agx-orin-jp5", "agx-xavier-jp42", "agx-xavier-sudo",
        "xavier-nx-constructed"])
def test_parse_tegrastats_instant_rails_and_total(line, expected):
    """Only the instant figure per rail; RAM/SWAP (MB), APE/VIC clocks, temperatures, `NC` channels are
    no rails; the total is VDD_IN where the module has it, else the sum of the rails."""
    assert parse_tegrastats(line) == expected


def test_parse_tegrastats_keeps_a_negative_reading_and_ignores_lines_without_rails():
    assert parse_tegrastats("VDD_GPU_SOC 1592mW/1592mW VDD_CPU_CV -398mW/-398mW") == {
        "VDD_GPU_SOC": 1592.0, "VDD_CPU_CV": -398.0, "total_mw": 1194.0}
    assert parse_tegrastats("RAM 2257/30536MB (lfb 5392x4MB) SWAP 0/15268MB (cached 0MB) APE 150") == {}


def _fake_sysfs(root: Path) -> Path:
    """Two INA3221 chips as the hwmon driver shows them: Orin Nano's rails on 1-0040 (plus the
    shunt-voltage sum in7, which is no rail), and on 1-0041 an `NC` channel, one rail and one
    channel switched off (its input cannot be read)."""
    first = root / "1-0040" / "hwmon" / "hwmon3"
    second = root / "1-0041" / "hwmon" / "hwmon4"
    files = {
        first / "name": "ina3221",
        first / "in1_label": "VDD_IN\n", first / "in1_input": "5064\n", first / "curr1_input": "1200\n",
        first / "in2_label": "VDD_CPU_GPU_CV\n", first / "in2_input": "5056\n", first / "curr2_input": "200\n",
        first / "in3_label": "VDD_SOC\n", first / "in3_input": "5048\n", first / "curr3_input": "300\n",
        first / "in7_label": "sum of shunt voltages\n", first / "in7_input": "1234\n",
        second / "in1_label": "NC\n", second / "in1_input": "0\n", second / "curr1_input": "0\n",
        second / "in2_label": "VDDQ_VDD2_1V8AO\n", second / "in2_input": "1800\n", second / "curr2_input": "250\n",
        second / "in3_label": "SWITCHED_OFF\n", second / "curr3_input": "0\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (second / "in3_input").mkdir()  # reading it fails, as the driver's -ENODATA does
    return root


def test_read_ina3221_on_a_fake_sysfs_tree(tmp_path):
    assert read_ina3221(_fake_sysfs(tmp_path)) == {
        "VDD_IN": 6076.8, "VDD_CPU_GPU_CV": 1011.2, "VDD_SOC": 1514.4, "VDDQ_VDD2_1V8AO": 450.0}
    assert read_ina3221(tmp_path / "absent") == {}


def _fake_tegrastats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> Path:
    """A `tegrastats` first on PATH that prints `lines` in turn every --interval ms and records its pid
    and arguments in the returned file."""
    bin_dir, log = tmp_path / "bin", tmp_path / "tegrastats.log"
    bin_dir.mkdir()
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    script = bin_dir / "tegrastats"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""\
        import os, sys, time
        interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000
        with open({str(log)!r}, "w") as handle:
            handle.write(f"{{os.getpid()}} {{' '.join(sys.argv[1:])}}")
        lines = open({str(tmp_path / 'lines.txt')!r}).read().splitlines()
        i = 0
        while True:
            print(lines[i % len(lines)], flush=True)
            i += 1
            time.sleep(interval)
        """))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _wait_for_samples(power: PowerSampler, count: int, timeout_s: float = 20.0) -> None:
    """Stay inside the block until `count` samples arrived (a loaded machine starts Python slowly)."""
    deadline = time.monotonic() + timeout_s
    while len(power.samples) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def _assert_gone(pid: int) -> None:
    """The child was waited for: a zombie would still answer signal 0."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sampler_reads_the_fake_tegrastats_and_stops_it(tmp_path, monkeypatch):
    log = _fake_tegrastats(tmp_path, monkeypatch, [ORIN_NANO_IDLE])
    assert PowerSampler.available(tmp_path / "no-sysfs") is None
    with PowerSampler(interval_ms=50, ina3221_root=tmp_path / "no-sysfs") as power:
        _wait_for_samples(power, 3)
    pid, args = log.read_text().split(" ", 1)
    assert args == "--interval 50"
    _assert_gone(int(pid))
    assert power.source == "tegrastats" and power.total_rail == "VDD_IN"
    assert len(power.samples) >= 3 and set(power.samples) == {4.824}
    assert power.mean_w == pytest.approx(4.824, rel=1e-12)
    assert power.energy_j(2.0) == pytest.approx(9.648, rel=1e-12)


def test_sampler_mean_over_alternating_lines(tmp_path, monkeypatch):
    _fake_tegrastats(tmp_path, monkeypatch, [ORIN_NANO_LOAD, ORIN_NANO_IDLE])
    with PowerSampler(interval_ms=20, ina3221_root=tmp_path / "no-sysfs") as power:
        _wait_for_samples(power, 6)
    assert {12.479, 4.824} == set(power.samples)
    assert power.mean_w == pytest.approx(sum(power.samples) / len(power.samples), rel=1e-12)
    assert 4.824 < power.mean_w < 12.479


def test_sampler_polls_sysfs_where_tegrastats_is_missing(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with PowerSampler(interval_ms=20, ina3221_root=_fake_sysfs(tmp_path / "sys")) as power:
        _wait_for_samples(power, 2)
    assert power.source == "ina3221" and power.total_rail == "VDD_IN"
    assert len(power.samples) >= 2
    assert power.mean_w == pytest.approx(6.0768, rel=1e-12)


def test_sampler_not_available_off_a_jetson(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    reason = PowerSampler.available(tmp_path / "no-sysfs")
    assert reason and "tegrastats" in reason and "INA3221" in reason
    with pytest.raises(PowerError, match="not a Jetson"):
        with PowerSampler(ina3221_root=tmp_path / "no-sysfs"):
            pass
    with pytest.raises(PowerError, match="no power sample"):
        PowerSampler().mean_w  # noqa: B018 - the property raises


def test_board_modules_import_no_tridesign_and_no_torch():
    """tridesign/board ships alone inside bundles: its modules import each other relatively only, never
    tridesign or torch; power.py and trt.py import only the standard library, numpy and tensorrt."""
    own = {"power.py": set(), "trt.py": {"numpy", "tensorrt"}}
    for path in sorted(BOARD.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & {"tridesign", "torch"}, f"{path.name}:{node.lineno} imports {roots}"
            if path.name in own:
                foreign = roots - set(sys.stdlib_module_names) - own[path.name]
                assert not foreign, f"{path.name}:{node.lineno} imports {foreign}"


@pytest.mark.jetson
def test_the_board_power_is_sampled_on_a_real_jetson() -> None:
    """On a Jetson (tegrastats or INA3221 present): a second of sampling gives a plausible board power."""
    reason = PowerSampler.available()
    if reason is not None:
        pytest.skip(f"not a Jetson: {reason}")
    with PowerSampler(interval_ms=100) as power:
        time.sleep(1.0)
    assert power.samples and 0.5 < power.mean_w < 100.0
