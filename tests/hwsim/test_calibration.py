import pytest

from tests.hwsim.conftest import small_system, tiny_cnn
from tridesign.errors import UsageError
from tridesign.hwsim.calibrate import calibrate
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import load_spec, spec_from_dict
from tridesign.hwsim.workload import load_workload


def test_calibration_procedure_hits_its_target():
    data = small_system().model_dump()
    data["calibration"] = {"parameter": "clock_mhz", "workload": "qdtrack_detector:paper", "target_ms": 0.5}
    system = spec_from_dict(data)
    wl = load_workload(tiny_cnn())
    cal = calibrate(system, wl)
    assert cal.achieved_ms == pytest.approx(0.5, rel=1e-3)
    tuned = system.with_device_overrides({"clock_mhz": cal.value})
    assert simulate(wl, tuned).totals["frame_interval_ms"] == pytest.approx(0.5, rel=1e-3)


def test_calibration_needs_a_declared_target():
    with pytest.raises(UsageError):
        calibrate(small_system(), load_workload(tiny_cnn()))


def test_calibration_refuses_a_stage_without_layers():
    data = small_system().model_dump()
    data["devices"]["e"] = data["devices"]["d"]
    data["stages"] = [{"name": "front", "device": "d", "match": "^backbone"}, {"name": "back", "device": "e"}]
    data["calibration"] = {"parameter": "clock_mhz", "workload": "qdtrack_detector:paper", "target_ms": 0.5}
    with pytest.raises(UsageError, match="stage front .* receives no layer"):
        calibrate(spec_from_dict(data), load_workload(tiny_cnn()))


def test_calibration_workload_is_a_registered_model_and_config():
    data = small_system().model_dump()
    data["calibration"] = {"parameter": "clock_mhz", "workload": "qdtrack-r50-1296x720", "target_ms": 0.5}
    with pytest.raises(UsageError, match="calibration.workload"):
        spec_from_dict(data)


@pytest.mark.slow
def test_alveo_preset_clock_is_the_calibrated_value():
    """Re-runs the documented procedure on the zoo's qdtrack_detector, paper config (ResNet-50 +
    FPN + RPN at 1296x720), exported as `simulate` exports it (~15-35 s: the export)."""
    from tridesign.compiler.reference_nets import calibration_workload

    spec = load_spec("tridesign-alveo")
    assert spec.calibration.workload == "qdtrack_detector:paper"
    workload = calibration_workload(spec.calibration.workload)
    cal = calibrate(spec, workload)
    assert spec.devices["alveo0"].clock_mhz == pytest.approx(cal.value, rel=0.005)
    assert cal.achieved_ms == pytest.approx(554.7, rel=1e-3)
    result = simulate(workload, spec)  # the stored clock: what `tridesign simulate qdtrack_detector --config paper` reports
    assert result.totals["frame_interval_ms"] == pytest.approx(554.7, rel=1e-3) and result.notes == []
    backbone, fpn_rpn = result.stages
    convs = {s.name: sum(1 for r in result.layers if r.stage == s.name and r.op_type == "Conv") for s in result.stages}
    assert convs == {"backbone": 53, "fpn_rpn": 8 + 3 * 5}  # ResNet-50; FPN lateral + output, RPN conv/cls/reg per level
    assert backbone.latency_ms > fpn_rpn.latency_ms > 0.5 * backbone.latency_ms
