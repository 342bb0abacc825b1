"""The co-design search space: data × model × circuit, typed and validated like the arch spec.

A space file (YAML) has up to three sections, each a mapping from a knob to the list of values to
try; a knob left out stays at its default (data, model) or at the arch's value (circuit):

    data:     {frame_drop: [none, "0.4", diff], patch_drop: [0, 0.2], patch_px: [60]}
    model:    {prune: [dense, "pattern:4:0.9"], int8: [false, true], recovery_steps: [300]}
    circuit:  {array_rows: [16, 32], dram_gbps: [9.6, 19.2], dataflow: [ws, os], tile_skipping: [true, false]}

Unknown keys, empty or repeated lists and values the parsers refuse (`--frame-drop`, `--prune`, the
arch spec's own field checks) are one-line errors naming the place. The data and model knobs are
what costs minutes (a model point is trained and compiled, a data point tracks the videos); the
circuit knobs cost milliseconds each (one `simulate`), so every circuit point is evaluated for
every measured (data, model) point.

int8 is a model knob with a circuit consequence the simulator reads from the quantized graph:
its layers move and multiply 8-bit words (the energy table's 8-bit MAC), a float model's the arch's
words (16-bit fixed point on the presets); `word_bits` is therefore not a circuit knob.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tridesign.data.video_sparsity import parse_frame_drop
from tridesign.errors import UsageError
from tridesign.hwsim.spec import SystemSpec
from tridesign.sparsity_plan import load_plan

SPACE_VERSION = 1
SPACES = Path(__file__).parent / "codesign_spaces"
DENSE = "dense"
NO_DROP = "none"
SKIPPING = ("weight_skipping", "tile_skipping", "frame_skipping")
MAX_CIRCUIT_POINTS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(map(json.dumps, values))) != len(values):
        raise ValueError("lists a value twice")
    return values


class DataSpace(_Strict):
    frame_drop: list[str] = Field([NO_DROP], min_length=1)
    patch_drop: list[float] = Field([0.0], min_length=1)
    patch_px: list[int] = Field([60], min_length=1)

    @field_validator("frame_drop", mode="before")
    @classmethod
    def _spell(cls, values: Any) -> Any:
        return [NO_DROP if v is None else str(v) for v in values] if isinstance(values, list) else values

    @field_validator("frame_drop")
    @classmethod
    def _frame_drop(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                parse_frame_drop(value)
            except UsageError as err:
                raise ValueError(str(err).replace("--frame-drop", f"frame_drop {value!r}")) from None
        return _distinct(values)

    @field_validator("patch_drop")
    @classmethod
    def _patch_drop(cls, values: list[float]) -> list[float]:
        if any(not 0 <= v < 1 for v in values):
            raise ValueError("every patch_drop must lie in [0, 1)")
        return _distinct(values)

    @field_validator("patch_px")
    @classmethod
    def _patch_px(cls, values: list[int]) -> list[int]:
        if any(v < 8 for v in values):
            raise ValueError("every patch_px must be at least 8 pixels")
        return _distinct(values)


class ModelSpace(_Strict):
    prune: list[str] = Field([DENSE], min_length=1)
    int8: list[bool] = Field([False], min_length=1)
    recovery_steps: list[int] = Field([0], min_length=1)

    @field_validator("prune")
    @classmethod
    def _prune(cls, values: list[str]) -> list[str]:
        for value in values:
            if value != DENSE:
                try:
                    load_plan(value)
                except UsageError as err:
                    raise ValueError(str(err)) from None
        return _distinct(values)

    @field_validator("recovery_steps")
    @classmethod
    def _steps(cls, values: list[int]) -> list[int]:
        if any(v < 0 for v in values):
            raise ValueError("every recovery_steps must be >= 0")
        return _distinct(values)

    @field_validator("int8")
    @classmethod
    def _int8(cls, values: list[bool]) -> list[bool]:
        return _distinct(values)


class CircuitSpace(_Strict):
    """Device fields of the arch spec (every device of the arch takes the value) and its skipping units."""

    array_rows: list[int] | None = Field(None, min_length=1)
    array_cols: list[int] | None = Field(None, min_length=1)
    clock_mhz: list[float] | None = Field(None, min_length=1)
    ifmap_sram_kib: list[float] | None = Field(None, min_length=1)
    filter_sram_kib: list[float] | None = Field(None, min_length=1)
    ofmap_sram_kib: list[float] | None = Field(None, min_length=1)
    dram_gbps: list[float] | None = Field(None, min_length=1)
    vector_lanes: list[int] | None = Field(None, min_length=1)
    dataflow: list[Literal["ws", "os", "is"]] | None = Field(None, min_length=1)
    weight_skipping: list[bool] | None = Field(None, min_length=1)
    tile_skipping: list[bool] | None = Field(None, min_length=1)
    frame_skipping: list[bool] | None = Field(None, min_length=1)

    @field_validator("*")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        return None if values is None else _distinct(values)

    def points(self) -> list[dict[str, Any]]:
        """Every circuit point, as overrides of the arch (an empty dict is the arch as given)."""
        knobs = {k: v for k, v in self.model_dump().items() if v is not None}
        return [dict(zip(knobs, values)) for values in itertools.product(*knobs.values())]


class SearchSpace(_Strict):
    version: Literal[1] = SPACE_VERSION
    data: DataSpace = DataSpace()
    model: ModelSpace = ModelSpace()
    circuit: CircuitSpace = CircuitSpace()

    def choices(self, task: str) -> dict[str, list[Any]]:
        """The costly knobs (data and model) with their values, as the sampler sees them."""
        knobs = self.model.model_dump()
        if task == "video":
            knobs = self.data.model_dump() | knobs
        return knobs


def circuit_system(system: SystemSpec, circuit: dict[str, Any]) -> SystemSpec:
    """The arch with a circuit point applied; a value the spec refuses is a one-line error."""
    overrides = {f"sparsity.{k}" if k in SKIPPING else k: v for k, v in circuit.items()}
    try:
        return system.with_device_overrides(overrides)
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(f"circuit point {circuit}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def load_space(path: Path | None, task: str, system: SystemSpec) -> SearchSpace:
    """The space in PATH (or the built-in one for `task`), checked against the task and the arch."""
    origin = str(path) if path is not None else f"built-in {task} space"
    file = Path(path) if path is not None else SPACES / f"{task}.yaml"
    if not file.is_file():
        raise UsageError(f"space file {file} {'is not a file' if file.exists() else 'does not exist'}")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"{origin}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{origin}: expected a mapping with data, model and circuit sections")
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise UsageError(f"{origin}: {where}: {message}") from None
    if task == "classification" and "data" in data:
        raise UsageError(f"{origin}: data: a classification search has no data-sparsity axis (the held-out split is scored whole)")
    count = math.prod(len(v) for v in space.circuit.model_dump().values() if v is not None)
    if count > MAX_CIRCUIT_POINTS:
        raise UsageError(f"{origin}: circuit: {count:,} points, each simulated for every (data, model) point: "
                         f"more than {MAX_CIRCUIT_POINTS:,}; shorten its lists")
    for circuit in space.circuit.points():
        circuit_system(system, circuit)
    return space
