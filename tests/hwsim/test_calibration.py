import pytest

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.errors import UsageError
from tridesign.hwsim.calibrate import calibrate
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import load_spec, spec_from_dict
from tridesign.hwsim.workload import load_workload


def test_calibration_procedure_hits_its_target():
    data = small_system().model_dump()
    data["calibration"] = {"parameter": "clock_mhz", "workload": "qdtrack-r50-1296x720", "target_ms": 0.5}
    system = spec_from_dict(data)
    wl = load_workload(tiny_cnn())
    cal = calibrate(system, wl)
    assert cal.achieved_ms == pytest.approx(0.5, rel=1e-3)
    tuned = system.with_device_overrides({"clock_mhz": cal.value})
    assert simulate(wl, tuned).totals["frame_interval_ms"] == pytest.approx(0.5, rel=1e-3)


def test_calibration_needs_a_declared_target():
    with pytest.raises(UsageError):
        calibrate(small_system(), load_workload(tiny_cnn()))


@pytest.mark.slow
def test_alveo_preset_clock_is_the_calibrated_value():
    """Re-runs the documented procedure on QDTrack-R50 at 1296x720 (~30 s: the torch export)."""
    from tridesign.compiler.reference_nets import calibration_workload

    spec = load_spec("tridesign-alveo")
    cal = calibrate(spec, calibration_workload(spec.calibration.workload))
    assert spec.devices["alveo0"].clock_mhz == pytest.approx(cal.value, rel=0.005)
    assert cal.achieved_ms == pytest.approx(554.7, rel=1e-3)
