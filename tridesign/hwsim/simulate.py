"""Simulate a workload on a system: compute (dataflow) → memory → energy, per layer and per stage.

Layers run one after another on their stage's device; stages run on separate devices and are
frame-pipelined, so a frame's latency is the sum of the stages (plus link transfers) while frames
leave at the pace of the slowest stage (the frame interval). Dropped frames (frame skipping) raise
the effective FPS over input frames; they do not shorten a processed frame.

A layer runs on the first stage whose `match` finds its ONNX node name. A layer no stage matches is
refused (`assign_stages`): putting it on some stage would silently describe another pipeline. A
stage that receives no layer is a note in `SimResult.notes`, not an error: a preset's pipeline is
written for the network it was designed for, and a classifier simulated on the two-card tri-design
preset (the CLI's default arch) rightly leaves the FPN card idle. Calibration refuses it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tridesign.annotations import DataSparsity
from tridesign.errors import UsageError
from tridesign.hwsim import dataflow as df
from tridesign.hwsim.energy import device_area_mm2, layer_energy, load_table
from tridesign.hwsim.memory import Traffic, layer_traffic
from tridesign.hwsim.sparsity import channel_nnz, frame_keep, layer_tile_fractions, weight_bytes
from tridesign.hwsim.spec import SystemSpec
from tridesign.hwsim.workload import Layer, Workload


@dataclass
class LayerResult:
    name: str
    op_type: str
    stage: str
    macs: int  # dense MACs of the layer as written
    useful_macs: int  # non-zero MACs on active tiles
    issued_macs: int  # MAC slots issued (zeros not skipped included)
    compute_cycles: int
    stall_cycles: int
    cycles: int
    latency_ms: float
    util_effective: float  # useful MACs / (PEs x cycles)
    util_dense_equiv: float  # issued MACs / (PEs x cycles)
    weight_density: float
    dram_bytes: float
    sram_bytes: float
    dram_by_operand: dict[str, float]
    energy_pj: dict[str, float]
    traffic: Traffic = field(repr=False)

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())


@dataclass
class StageResult:
    name: str
    device: str
    cycles: int
    latency_ms: float
    link_bytes: float  # activations received from earlier stages
    link_ms: float
    dynamic_energy_pj: float
    static_energy_pj: float  # over one frame interval
    area_mm2: dict[str, float]


@dataclass
class SimResult:
    workload: str
    arch: str
    dataflow: str
    mode: str
    energy_unit: str
    layers: list[LayerResult]
    stages: list[StageResult]
    frame_keep: float
    totals: dict[str, float | None] = field(default_factory=dict)
    data_sparsity: DataSparsity | None = None  # the record simulated (its `source` says where it came from)
    notes: list[str] = field(default_factory=list)  # one line each: what the user must know about this mapping

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for layer in self.layers:
            row = asdict(layer)
            row.pop("traffic")
            layers.append(row)
        return {
            "workload": self.workload, "arch": self.arch, "dataflow": self.dataflow, "mode": self.mode,
            "energy_unit": self.energy_unit, "frame_keep": self.frame_keep, "totals": self.totals,
            "data_sparsity": self.data_sparsity.model_dump(mode="json") if self.data_sparsity else None,
            "notes": self.notes, "stages": [asdict(s) for s in self.stages], "layers": layers,
        }


def assign_stages(workload: Workload, system: SystemSpec) -> list[str]:
    """The stage of each layer: the first stage whose `match` regex finds the layer's node name.

    Layers that no stage matches are refused in one line naming how many and the first.
    """
    stages = system.pipeline
    patterns = [re.compile(s.match) for s in stages]
    out = [next((s.name for s, p in zip(stages, patterns) if p.search(layer.name)), None) for layer in workload.layers]
    unmatched = [layer.name for layer, stage in zip(workload.layers, out) if stage is None]
    if unmatched:
        raise UsageError(
            f"arch {system.name}: {len(unmatched)} of {len(out)} layers of {workload.name} match no stage "
            f"(first: {unmatched[0]}); end the stages with one whose match is '.*' to take the rest"
        )
    return out


def stage_notes(workload: Workload, system: SystemSpec, stage_of: list[str]) -> list[str]:
    """One line for each stage that receives no layer (its card idles: the mapping may be wrong)."""
    used = set(stage_of)
    return [
        f"stage {s.name} ({s.device}) of {system.name} receives no layer of {workload.name}: its match {s.match!r} "
        "finds no node name" for s in system.pipeline if s.name not in used
    ]


def simulate(workload: Workload, system: SystemSpec, dataflow: str | None = None, mode: str = "exact") -> SimResult:
    if mode not in df.MODES:
        raise ValueError(f"mode must be one of {df.MODES}")
    stage_of = assign_stages(workload, system)
    stage_specs = {s.name: s for s in system.pipeline}
    fractions = layer_tile_fractions(workload)
    results: list[LayerResult] = []
    for layer, stage, fraction in zip(workload.layers, stage_of, fractions):
        device = system.devices[stage_specs[stage].device]
        if layer.word_bits is not None and layer.word_bits < device.word_bits:  # an int8 layer on a wider datapath
            device = device.model_copy(update={"word_bits": layer.word_bits})
        tiles = fraction if device.sparsity.tile_skipping else 1.0
        results.append(_simulate_layer(layer, stage, device, dataflow or device.dataflow, mode, tiles))
    first = next(iter(system.devices.values()))
    keep = frame_keep(workload, first)
    stages = _stages(workload, system, stage_of, results)
    table_unit = load_table(first.energy_table).unit
    out = SimResult(workload.name, system.name, dataflow or first.dataflow, mode, table_unit, results, stages, keep,
                    data_sparsity=workload.data_sparsity,
                    notes=stage_notes(workload, system, stage_of) + _unused_sparsity_notes(workload, system, fractions))
    out.totals = _totals(out, system)
    return out


def _unused_sparsity_notes(workload: Workload, system: SystemSpec, fractions: list[float]) -> list[str]:
    """Data sparsity the record declares but no device of the arch can exploit."""
    ds = workload.data_sparsity
    if ds is None:
        return []
    devices = [system.devices[s.device] for s in system.pipeline]
    notes = []
    if min(fractions, default=1.0) < 1.0 and not any(d.sparsity.tile_skipping for d in devices):
        notes.append(f"arch {system.name} skips no tiles: the record's inactive tiles are computed anyway")
    if ds.frame_keep_fraction < 1.0 and not next(iter(system.devices.values())).sparsity.frame_skipping:
        notes.append(f"arch {system.name} skips no frames: dropped frames are counted as processed")
    return notes


def _simulate_layer(layer: Layer, stage: str, device, dataflow: str, mode: str, tiles: float) -> LayerResult:
    if layer.kind == "gemm":
        M = math.ceil(layer.M * tiles) if mode == "exact" else layer.scalesim_M or layer.M
        useful = M * layer.groups * layer.N * layer.K * layer.weight_density
        nnz = channel_nnz(layer, device)
        # A compiler runs a layer sparse only when that is faster: at low sparsity the compressed
        # weights (values + indices) can outweigh the dense ones and cost more DRAM time.
        options = [_gemm_option(layer, device, dataflow, mode, M, tiles, None)]
        if nnz is not None:
            options.append(_gemm_option(layer, device, dataflow, mode, M, tiles, nnz))
        compute, issued, traffic = min(options, key=lambda o: (o[2].total_cycles, o[2].dram_bytes))
        vector_ops = 0
    else:
        vector_ops = math.ceil(layer.vector_ops * tiles)
        compute, issued, useful = math.ceil(vector_ops / device.vector_lanes), 0, 0
        traffic = layer_traffic(layer, device, dataflow, compute, 1, tiles, 0.0, 1.0)
    energy = layer_energy(load_table(device.energy_table), issued, vector_ops, traffic, device.word_bits)
    cycles = traffic.total_cycles
    pe_cycles = device.pes * max(cycles, 1)
    return LayerResult(
        name=layer.name, op_type=layer.op_type, stage=stage, macs=layer.macs, useful_macs=int(round(useful)),
        issued_macs=issued, compute_cycles=compute, stall_cycles=traffic.stall_cycles, cycles=cycles,
        latency_ms=cycles / (device.clock_mhz * 1e3), util_effective=min(useful, issued) / pe_cycles,
        util_dense_equiv=issued / pe_cycles, weight_density=layer.weight_density,
        dram_bytes=traffic.dram_bytes, sram_bytes=traffic.sram_bytes,
        dram_by_operand={k: traffic.dram_read[k] + traffic.dram_write[k] for k in traffic.dram_read},
        energy_pj=energy, traffic=traffic,
    )


def _gemm_option(layer: Layer, device, dataflow: str, mode: str, M: int, tiles: float, nnz) -> tuple[int, int, Traffic]:
    """(compute cycles, issued MACs, traffic) of a GEMM layer run dense (`nnz` None) or zero-skipping."""
    g = df.gemm_cycles(M, layer.K, layer.N, layer.groups, device.array_rows, device.array_cols, dataflow, nnz, mode)
    density = 1.0 if nnz is None else float(nnz.sum()) / (layer.groups * layer.N * layer.K)
    values, meta = weight_bytes(layer, device, compressed=nnz is not None)
    return g.cycles, g.issued_macs, layer_traffic(layer, device, dataflow, g.cycles, g.folds, tiles, values + meta, density)


def _stages(workload: Workload, system: SystemSpec, stage_of: list[str], results: list[LayerResult]) -> list[StageResult]:
    producer = {layer.output: stage for layer, stage in zip(workload.layers, stage_of)}
    out = []
    for spec in system.pipeline:
        device = system.devices[spec.device]
        table = load_table(device.energy_table)
        mine = [r for r, s in zip(results, stage_of) if s == spec.name]
        crossing = {  # tensor -> bytes, in the receiving layer's words (8-bit in an int8 graph)
            tensor: elems * min(layer.word_bits or device.word_bits, device.word_bits) / 8
            for layer, s in zip(workload.layers, stage_of) if s == spec.name
            for tensor, elems in layer.inputs if producer.get(tensor, spec.name) != spec.name
        }
        link_bytes = sum(crossing.values())
        link_ms = link_bytes / (system.link_gbps * 1e9) * 1e3
        out.append(StageResult(
            name=spec.name, device=spec.device, cycles=sum(r.cycles for r in mine),
            latency_ms=sum(r.latency_ms for r in mine), link_bytes=link_bytes, link_ms=link_ms,
            dynamic_energy_pj=sum(r.energy_total_pj for r in mine) + link_bytes * table.link_pj_per_byte,
            static_energy_pj=0.0, area_mm2=device_area_mm2(device),
        ))
    interval = max(s.latency_ms for s in out) if out else 0.0
    used_devices = {s.device for s in out}
    for stage in out:  # each device draws its static power for a whole frame interval, once
        if stage.device in used_devices:
            stage.static_energy_pj = system.devices[stage.device].static_power_w * interval * 1e-3 * 1e12
            used_devices.discard(stage.device)
    return out


def _totals(result: SimResult, system: SystemSpec) -> dict[str, float | None]:
    layers, stages = result.layers, result.stages
    latency = sum(s.latency_ms + s.link_ms for s in stages)
    interval = max((s.latency_ms for s in stages), default=0.0)
    stage_device = {s.name: system.devices[s.device] for s in stages}
    pe_cycles = sum(stage_device[r.stage].pes * r.cycles for r in layers) or 1
    dynamic = sum(s.dynamic_energy_pj for s in stages)
    static = sum(s.static_energy_pj for s in stages)
    per_frame = dynamic + static
    fps = 1e3 / interval if interval else 0.0
    breakdown: dict[str, float] = {}
    for r in layers:
        for k, v in r.energy_pj.items():
            breakdown[k] = breakdown.get(k, 0.0) + v
    breakdown["link"] = sum(s.link_bytes * load_table(stage_device[s.name].energy_table).link_pj_per_byte for s in stages)
    breakdown["static"] = static
    joules = result.energy_unit == "pJ"
    return {
        "macs": sum(r.macs for r in layers),
        "useful_macs": sum(r.useful_macs for r in layers),
        "compute_cycles": sum(r.compute_cycles for r in layers),
        "stall_cycles": sum(r.stall_cycles for r in layers),
        "cycles": sum(r.cycles for r in layers),
        "latency_ms": latency,
        "frame_interval_ms": interval,
        "fps": fps,
        "effective_fps": fps / result.frame_keep if result.frame_keep else 0.0,
        "util_effective": sum(min(r.useful_macs, r.issued_macs) for r in layers) / pe_cycles,
        "util_dense_equiv": sum(r.issued_macs for r in layers) / pe_cycles,
        "dram_bytes": sum(r.dram_bytes for r in layers),
        "sram_bytes": sum(r.sram_bytes for r in layers),
        "energy_per_frame": per_frame,
        "energy_per_input_frame": per_frame * result.frame_keep,
        "energy_per_frame_j": per_frame * 1e-12 if joules else None,
        "energy_per_input_frame_j": per_frame * result.frame_keep * 1e-12 if joules else None,
        "power_w": per_frame * 1e-12 / (interval * 1e-3) if joules and interval else None,
        "area_mm2": sum(sum(device_area_mm2(d).values()) for d in system.devices.values()),
        **{f"energy.{k}": v for k, v in breakdown.items()},
    }
