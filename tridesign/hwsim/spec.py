"""The accelerator spec: a frozen, typed model loaded from YAML.

A *system* is one or more devices (each a systolic PE array with its SRAMs, DRAM and vector
unit) and the pipeline stages mapped onto them. Unknown keys are rejected, every quantity carries
its unit in its name (`sram_kib`, `dram_gbps`, `clock_mhz`), and `version` lets the format change
without silently misreading an old file (Timeloop/Accelergy-style specs, validated by pydantic).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tridesign.errors import UsageError

PRESET_DIR = Path(__file__).parent / "presets"
SPEC_VERSION = 1
Dataflow = Literal["ws", "os", "is"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SparsitySupport(_Frozen):
    """What the hardware can skip; a workload's sparsity is only exploited where this allows it."""

    weight_skipping: bool = False  # zero weights are not issued (compressed weights, channel skipping)
    index_bits: int = Field(4, ge=0, le=32)  # metadata per stored non-zero of unstructured weights
    tile_skipping: bool = False  # inactive spatial tiles are neither loaded nor computed
    frame_skipping: bool = False  # dropped frames cost nothing


class DeviceSpec(_Frozen):
    """One accelerator: a systolic array, three double-buffered SRAMs, DRAM and a vector unit."""

    array_rows: int = Field(gt=0)
    array_cols: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    word_bits: int = Field(16, gt=0)
    ifmap_sram_kib: float = Field(gt=0)
    filter_sram_kib: float = Field(gt=0)
    ofmap_sram_kib: float = Field(gt=0)
    double_buffered: bool = True
    dram_gbps: float = Field(gt=0)  # GB/s (1e9 bytes per second)
    dram_latency_ns: float = Field(100.0, ge=0)
    vector_lanes: int = Field(16, gt=0)
    dataflow: Dataflow = "ws"
    static_power_w: float = Field(0.0, ge=0)  # board/leakage power drawn whenever the device is on
    energy_table: str = "horowitz45"  # a table name in energy_tables/ or a YAML path
    sparsity: SparsitySupport = SparsitySupport()

    @property
    def pes(self) -> int:
        return self.array_rows * self.array_cols

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e9 / (self.clock_mhz * 1e6)


class StageSpec(_Frozen):
    """A pipeline stage: the layers whose ONNX node name `match` finds (a regex; the first stage that
    matches wins). A layer no stage matches is refused, a stage no layer reaches is a note
    (`tridesign.hwsim.simulate.assign_stages`): end the list with `match: ".*"` to take the rest."""

    name: str
    device: str
    match: str = ".*"

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err})") from None
        return value


class CalibrationSpec(_Frozen):
    """How an unpublished parameter was fitted: `parameter` solved so `workload` takes `target_ms`.

    `workload` is `MODEL:CONFIG`, a registered model of the zoo exported at batch 1 by the compiler's
    verified exporter (`tridesign.compiler.reference_nets.calibration_workload`): the network the
    preset is calibrated on is the one users simulate, not a copy of it.
    """

    parameter: Literal["clock_mhz"]
    workload: str = Field(pattern=r"^[\w.-]+:[\w.-]+$")
    target_ms: float = Field(gt=0)
    metric: Literal["frame_interval_ms"] = "frame_interval_ms"
    source: str = ""


class SystemSpec(_Frozen):
    version: Literal[1]
    name: str
    description: str = ""
    sources: list[str] = []
    devices: dict[str, DeviceSpec] = Field(min_length=1)
    stages: list[StageSpec] = []
    link_gbps: float = Field(10.0, gt=0)  # between pipeline stages (activations cross it)
    calibration: CalibrationSpec | None = None

    @model_validator(mode="after")
    def _stages_name_devices(self) -> "SystemSpec":
        for stage in self.stages:
            if stage.device not in self.devices:
                raise ValueError(f"stage {stage.name!r} names unknown device {stage.device!r}")
        return self

    @property
    def pipeline(self) -> list[StageSpec]:
        """The stages, or one stage running everything on the first device."""
        return self.stages or [StageSpec(name="all", device=next(iter(self.devices)))]

    def with_device_overrides(self, overrides: dict[str, Any]) -> "SystemSpec":
        """The same system with `overrides` applied to every device (used by sweeps)."""
        devices = {}
        for key, dev in self.devices.items():
            data = dev.model_dump()
            for field, value in overrides.items():
                if field.startswith("sparsity."):
                    data["sparsity"][field.split(".", 1)[1]] = value
                else:
                    data[field] = value
            devices[key] = DeviceSpec.model_validate(data)
        return self.model_copy(update={"devices": devices})


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_spec(name_or_path: str | Path) -> SystemSpec:
    """A preset name (see `list_presets`) or a YAML file; bad files raise a one-line UsageError."""
    path = Path(name_or_path)
    if not path.suffix and (PRESET_DIR / f"{path}.yaml").exists():
        path = PRESET_DIR / f"{path}.yaml"
    if not path.exists():
        raise UsageError(f"unknown arch {str(name_or_path)!r}: not a file and not a preset ({', '.join(list_presets())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    return spec_from_dict(data, str(path))


def spec_from_dict(data: Any, origin: str = "spec") -> SystemSpec:
    if not isinstance(data, dict):
        raise UsageError(f"{origin}: expected a mapping at the top level")
    if data.get("version") != SPEC_VERSION:
        raise UsageError(f"{origin}: unsupported spec version {data.get('version')!r} (expected {SPEC_VERSION})")
    try:
        return SystemSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{origin}: {where}: {first['msg']}") from None
