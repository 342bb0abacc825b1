import pytest
import yaml
from pydantic import ValidationError

from tridesign.errors import UsageError
from tridesign.hwsim.spec import DeviceSpec, list_presets, load_spec, spec_from_dict


def test_presets_load_and_are_documented():
    names = list_presets()
    assert {"tridesign-alveo", "zynq-ultrascale", "eyeriss-like", "tpu-like"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec.sources, f"{name} must cite where its numbers come from"
        assert spec.version == 1


def test_alveo_is_a_two_stage_pipeline():
    spec = load_spec("tridesign-alveo")
    assert [s.device for s in spec.pipeline] == ["alveo0", "alveo1"]
    assert spec.calibration is not None and spec.calibration.target_ms == 554.7


def _base(tmp_path):
    data = yaml.safe_load(open(load_spec.__globals__["PRESET_DIR"] / "eyeriss-like.yaml"))
    return data


def test_unknown_key_rejected(tmp_path):
    data = _base(tmp_path)
    data["devices"]["eyeriss"]["sram_kb"] = 4
    with pytest.raises(UsageError, match="sram_kb"):
        spec_from_dict(data)


def test_version_required(tmp_path):
    data = _base(tmp_path)
    data["version"] = 2
    with pytest.raises(UsageError, match="version"):
        spec_from_dict(data)


def test_stage_must_name_a_device(tmp_path):
    data = _base(tmp_path)
    data["stages"] = [{"name": "a", "device": "nope"}]
    with pytest.raises(UsageError, match="unknown device"):
        spec_from_dict(data)


def test_spec_is_frozen_and_overrides_copy():
    spec = load_spec("eyeriss-like")
    with pytest.raises(ValidationError):
        spec.devices["eyeriss"].array_rows = 4
    bigger = spec.with_device_overrides({"array_rows": 32, "sparsity.weight_skipping": True})
    assert bigger.devices["eyeriss"].array_rows == 32 and bigger.devices["eyeriss"].sparsity.weight_skipping
    assert spec.devices["eyeriss"].array_rows == 12


def test_units_are_in_field_names():
    quantities = [f for f, info in DeviceSpec.model_fields.items() if info.annotation in (float,)]
    assert quantities and all(f.endswith(("_kib", "_gbps", "_mhz", "_ns", "_w")) for f in quantities)


def test_unknown_preset_and_file_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown arch"):
        load_spec("no-such-arch")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ndevices: {}\n")
    with pytest.raises(UsageError):
        load_spec(bad)
