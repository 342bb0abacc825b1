"""Energy = action counts x energy per action (Accelergy's split), and area per component.

Tables are YAML files in `energy_tables/` (each citing its source) or a user's file with the same
keys. Actions counted per layer: MACs issued (zeros not skipped still cost a MAC), PE register
traffic (three operand bytes a MAC: input, weight, partial sum), SRAM and DRAM bytes per operand,
vector operations, bytes crossing a pipeline link, and static power over the run time.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tridesign.errors import UsageError
from tridesign.hwsim.memory import Traffic
from tridesign.hwsim.spec import DeviceSpec

TABLE_DIR = Path(__file__).parent / "energy_tables"
REG_BYTES_PER_MAC = 3


class EnergyTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    name: str
    unit: str = "pJ"
    sources: list[str] = []
    mac_pj: float = Field(ge=0)
    mac8_pj: float | None = Field(None, ge=0)  # an 8-bit MAC, where the table has one (else mac_pj)
    reg_pj_per_byte: float = Field(ge=0)
    sram_pj_per_byte: float = Field(ge=0)
    dram_pj_per_byte: float = Field(ge=0)
    vector_op_pj: float = Field(ge=0)
    link_pj_per_byte: float = Field(ge=0)
    pe_mm2: float = Field(ge=0)
    sram_mm2_per_kib: float = Field(ge=0)
    vector_lane_mm2: float = Field(ge=0)


_CACHE: dict[str, EnergyTable] = {}


def load_table(name_or_path: str) -> EnergyTable:
    if name_or_path in _CACHE:
        return _CACHE[name_or_path]
    path = Path(name_or_path)
    if not path.suffix and (TABLE_DIR / f"{name_or_path}.yaml").exists():
        path = TABLE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TABLE_DIR.glob("*.yaml")))
        raise UsageError(f"unknown energy table {name_or_path!r} (built in: {known})")
    try:
        table = EnergyTable.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError) as err:
        raise UsageError(f"{path}: not a valid energy table ({str(err).splitlines()[0]})") from None
    _CACHE[name_or_path] = table
    return table


def layer_energy(
    table: EnergyTable, issued_macs: int, vector_ops: int, traffic: Traffic, word_bits: int = 16
) -> dict[str, float]:
    """Dynamic energy of one layer, by component and by operand, in the table's unit; 8-bit words
    take the table's 8-bit MAC where it has one (traffic already counts their bytes)."""
    mac = table.mac8_pj if word_bits <= 8 and table.mac8_pj is not None else table.mac_pj
    out = {
        "mac": issued_macs * mac,
        "reg": issued_macs * REG_BYTES_PER_MAC * table.reg_pj_per_byte,
        "vector": vector_ops * table.vector_op_pj,
    }
    for operand in ("ifmap", "filter", "ofmap"):
        sram = traffic.sram_read[operand] + traffic.sram_write[operand]
        dram = traffic.dram_read[operand] + traffic.dram_write[operand]
        out[f"sram.{operand}"] = sram * table.sram_pj_per_byte
        out[f"dram.{operand}"] = dram * table.dram_pj_per_byte
    return out


def device_area_mm2(device: DeviceSpec) -> dict[str, float]:
    """Area per component of one device from its energy table's area figures."""
    table = load_table(device.energy_table)
    sram_kib = device.ifmap_sram_kib + device.filter_sram_kib + device.ofmap_sram_kib
    return {
        "pe_array": device.pes * table.pe_mm2,
        "sram": sram_kib * table.sram_mm2_per_kib,
        "vector": device.vector_lanes * table.vector_lane_mm2,
    }
