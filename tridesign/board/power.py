"""Board power while a timed run goes on, from `tegrastats` or the INA3221 power monitors' sysfs files.

Standard library only. `PowerSampler` samples in a background thread and gives the mean board power
over the block, so the runner can report energy per inference next to latency.

What tegrastats prints (recorded lines in tests/board/test_power.py, with their sources): one line
per interval, each power rail as `NAME <instant>/<average>` in milliwatts, where the average runs
since tegrastats started, so only the instant value is used.
* JetPack 4 (L4T 32): no unit, `GPU 463/463` (AGX Xavier), `POM_5V_IN 933/933` (Nano).
* JetPack 5 and 6: `VDD_GPU_SOC 2390mW/2390mW`; unconnected monitor channels print as `NC 0mW/0mW`
  (AGX Orin) and are skipped. A rail can read slightly negative at idle (`VDD_CPU_CV -398mW`, a sensor
  offset seen on AGX Orin); it is kept as read.
* JetPack 7: a third figure, `VDD_GPU_SOC 5139mW/5139mW/5139mW`.

Which figure is the board total (`total_mw`), per family:
* Orin NX, Orin Nano: `VDD_IN`, the module's input (rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC).
* Xavier NX, TX2: `VDD_IN` likewise; Nano, TX1: `POM_5V_IN`.
* AGX Orin (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO) and AGX Xavier (GPU, CPU, SOC, CV,
  VDDRQ, SYS5V) measure no input rail: the total is the sum of the rails, as jetson_stats computes it
  (jtop/core/power.py, citing NVIDIA's forum thread "Xavier Jetson total power consumption"). On AGX
  Orin, VIN_SYS_5V0 is the 5 V system rail, not the total (jetson_stats issue #344). The sum leaves
  out the carrier board. Whether VDDQ_VDD2_1V8AO is fed from one of the other AGX Orin rails (so
  counted twice) is not verified.

The INA3221 files (Linux hwmon driver, Documentation/hwmon/ina3221.rst; JetPack 5 and later):
`in{N}_label`, `in{N}_input` (bus mV), `curr{N}_input` (mA) for channels 1..3 under
/sys/bus/i2c/drivers/ina3221/<i2c addr>/hwmon/hwmon<k>/; `in7_label` labels the shunt-voltage sum,
which is no rail. JetPack 4's ina3221x iio driver is not read: tegrastats serves those boards.

Not verified here (no Jetson): whether tegrastats flushes every line when its output is a pipe
(jetson_stats 3 and others read it line by line through one, which suggests it does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO

INA3221_ROOT = Path("/sys/bus/i2c/drivers/ina3221")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # rails that measure the whole module's input
SUM_OF_RAILS = "sum of rails"

# A rail: a name, then the instant value with `mW` and more `/valuemW`, or without unit and with at
# least one `/value`; anything else (`RAM 2257/30536MB`, `APE 150`, `GR3D_FREQ 0%`) is no rail.
_RAIL = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_]*) (-?\d+)(?:mW(?:/-?\d+mW)*|(?:/-?\d+)+)(?=\s|$)")
_NOT_CONNECTED = "NC"


class PowerError(Exception):
    """Power cannot be measured here, or nothing was measured: one line for the user."""


def parse_tegrastats(line: str) -> dict[str, float]:
    """Instant power per rail in mW from one tegrastats line, plus `total_mw` (see the module
    docstring for which rail that is per board family); {} when the line has no power rail."""
    rails = _rails(line)
    return {**rails, "total_mw": total_mw(rails)} if rails else {}


def _rails(line: str) -> dict[str, float]:
    return {name: float(value) for name, value in _RAIL.findall(line) if name != _NOT_CONNECTED}


def total_mw(rails: dict[str, float]) -> float:
    """The module's input rail where the board has one, else the sum of all rails."""
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name]
    return sum(rails.values())


def total_rail(rails: dict[str, float]) -> str:
    """The name of what `total_mw` returns for these rails."""
    return next((name for name in INPUT_RAILS if name in rails), SUM_OF_RAILS)


def read_ina3221(root: Path = INA3221_ROOT) -> dict[str, float]:
    """Rail name -> mW (bus mV x mA / 1000) from every INA3221 channel under `root` that has a rail
    label and can be read; disabled channels (the driver answers reads with an error) are skipped."""
    rails = {}
    for label_file in sorted(Path(root).glob("*/hwmon/hwmon*/in*_label")):
        channel = label_file.name.removeprefix("in").removesuffix("_label")
        try:
            label = label_file.read_text().strip()
            millivolts = float((label_file.parent / f"in{channel}_input").read_text())
            milliamps = float((label_file.parent / f"curr{channel}_input").read_text())
        except (OSError, ValueError):
            continue  # no current file (in7, the shunt-voltage sum), or a channel switched off
        if label and label != _NOT_CONNECTED:
            rails[label] = millivolts * milliamps / 1000.0
    return rails


class PowerSampler:
    """`with PowerSampler() as power: run()`; then `power.mean_w`, `power.samples` (board total, W,
    one per interval), `power.source` ('tegrastats' or 'ina3221') and `power.energy_j(seconds)`.

    tegrastats is preferred (it is what NVIDIA documents); it runs as a child process with
    `--interval`, and is terminated and waited for when the block ends, so no zombie is left. Where it
    is missing, the INA3221 files are polled at the same interval.
    """

    def __init__(self, interval_ms: int = 50, *, ina3221_root: Path = INA3221_ROOT) -> None:
        if interval_ms < 1:
            raise PowerError(f"sampling interval must be at least 1 ms, not {interval_ms}")
        self.interval_ms = interval_ms
        self.ina3221_root = Path(ina3221_root)
        self.samples: list[float] = []
        self.source = ""
        self.total_rail = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[str] | None = None

    @staticmethod
    def available(ina3221_root: Path = INA3221_ROOT) -> str | None:
        """None on a Jetson (tegrastats on PATH, or readable INA3221 rails); otherwise why not."""
        if shutil.which("tegrastats") or read_ina3221(ina3221_root):
            return None
        return f"no tegrastats on PATH and no INA3221 power monitor under {ina3221_root} (not a Jetson board)"

    @property
    def mean_w(self) -> float:
        if not self.samples:
            raise PowerError(f"no power sample arrived from {self.source or 'the sampler'} during the run; "
                             f"run longer than the {self.interval_ms} ms sampling interval")
        return sum(self.samples) / len(self.samples)

    def energy_j(self, seconds: float) -> float:
        """Energy over `seconds` of the run at the block's mean power."""
        return self.mean_w * seconds

    def __enter__(self) -> PowerSampler:
        reason = self.available(self.ina3221_root)
        if reason:
            raise PowerError(reason)
        executable = shutil.which("tegrastats")
        if executable:
            self.source = "tegrastats"
            self._process = subprocess.Popen(
                [executable, "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            )
            target, args = self._read_tegrastats, (self._process.stdout,)
        else:
            self.source, target, args = "ina3221", self._poll_ina3221, ()
        self._thread = threading.Thread(target=target, args=args, name=f"power-{self.source}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._process is not None:
            _stop_process(self._process)
        if self._thread is not None:
            self._thread.join()
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def _record(self, rails: dict[str, float]) -> None:
        if rails and not self._stop.is_set():
            self.total_rail = total_rail(rails)
            self.samples.append(total_mw(rails) / 1000.0)

    def _read_tegrastats(self, stdout: IO[str]) -> None:
        """Read lines until tegrastats is stopped (end of file); lines after the block are ignored."""
        for line in stdout:
            self._record(_rails(line))

    def _poll_ina3221(self) -> None:
        """One reading at once, then one every interval until the block ends."""
        while True:
            self._record(read_ina3221(self.ina3221_root))
            if self._stop.wait(self.interval_ms / 1000.0):
                return


def _stop_process(process: subprocess.Popen[str], timeout_s: float = 5.0) -> None:
    """Terminate, wait (which reaps it), and kill if it does not go within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
