"""Calibration of unpublished spec parameters against a published measurement.

The tri-design accelerator's micro-architecture is not published; its dense frame time is
(554.7 ms for QDTrack ResNet-50 at 1296x720, ASP-DAC'23 Table). A preset names its one free
parameter and the zoo network it is fitted on in `calibration:` (`qdtrack_detector:paper`: the
zoo's detector, not a copy of it), and `calibrate` solves it: with everything else fixed, the simulated
frame interval scales as 1/clock except for DRAM latency and bandwidth, which are fixed in
nanoseconds and GB/s, so the clock is found by fixed-point iteration
`clock <- clock * simulated_ms / target_ms` until it moves by less than `tol`. The preset stores the
rounded result, and a test re-runs this procedure and checks the stored value, so the number in
the YAML is reproducible rather than asserted. A pipeline stage that receives no layer of the
calibration network is refused: a clock fitted on a mis-mapped pipeline fits the wrong card.
"""

from __future__ import annotations

from dataclasses import dataclass

from tridesign.errors import UsageError
from tridesign.hwsim.simulate import assign_stages, simulate, stage_notes
from tridesign.hwsim.spec import SystemSpec
from tridesign.hwsim.workload import Workload


@dataclass(frozen=True)
class Calibration:
    parameter: str
    value: float
    achieved_ms: float
    target_ms: float
    iterations: int


def calibrate(system: SystemSpec, workload: Workload, tol: float = 1e-4, max_iter: int = 50) -> Calibration:
    """Solve the spec's calibration parameter (the clock of every device) for its target time on
    `workload` (the network the spec's `calibration.workload` names:
    tridesign.compiler.reference_nets.calibration_workload exports it)."""
    cal = system.calibration
    if cal is None:
        raise UsageError(f"arch {system.name!r} declares no calibration")
    idle = stage_notes(workload, system, assign_stages(workload, system))
    if idle:
        raise UsageError(f"cannot calibrate {system.name!r} on {workload.name}: {idle[0]}")
    clock = next(iter(system.devices.values())).clock_mhz
    achieved = 0.0
    for iteration in range(1, max_iter + 1):
        trial = system.with_device_overrides({"clock_mhz": clock})
        achieved = simulate(workload, trial).totals[cal.metric]
        new_clock = clock * achieved / cal.target_ms
        if abs(new_clock - clock) <= tol * clock:
            return Calibration(cal.parameter, new_clock, achieved, cal.target_ms, iteration)
        clock = new_clock
    raise UsageError(f"calibration of {system.name!r} did not converge in {max_iter} iterations")
