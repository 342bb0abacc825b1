"""Memory side of one layer: SRAM and DRAM traffic per operand, and the stalls DRAM causes.

Each operand has its own SRAM (ifmap, filter, ofmap). Double-buffered, half of it is filled while
the other half feeds the array, so an operand is fetched from DRAM once if it fits in that half and
once per pass of the other operand's folds if it does not (the reuse rules of SCALE-Sim's
double-buffered scratchpad, in closed form). Partial sums that do not fit the ofmap half are either
written out and read back once per extra row fold or avoided by chunking the rows and re-fetching
the weights per chunk, whichever moves fewer bytes. Transfers overlap compute when double-buffered;
the first fold's fetch and the DRAM latency do not, and any transfer time beyond compute is stall.
The same choice of loop order is made for the streamed operand: re-read it once per fold of the
other operand, or chunk it and re-read the other operand per chunk.
Vector-unit layers stay on chip when their data fits the ifmap half (fused after their producer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tridesign.atomic import atomic_file
from tridesign.hwsim.spec import DeviceSpec
from tridesign.hwsim.workload import Layer

LINE_BYTES = 64


@dataclass(frozen=True)
class Traffic:
    dram_read: dict[str, float]  # bytes per operand: ifmap, filter, ofmap (partials read back)
    dram_write: dict[str, float]
    sram_read: dict[str, float]  # bytes the array reads from / writes to each SRAM
    sram_write: dict[str, float]
    total_cycles: int
    stall_cycles: int

    @property
    def dram_bytes(self) -> float:
        return sum(self.dram_read.values()) + sum(self.dram_write.values())

    @property
    def sram_bytes(self) -> float:
        return sum(self.sram_read.values()) + sum(self.sram_write.values())


def _fits(nbytes: float, kib: float, device: DeviceSpec) -> bool:
    usable = kib * 1024 / (2 if device.double_buffered else 1)
    return nbytes <= usable


def layer_traffic(
    layer: Layer, device: DeviceSpec, dataflow: str, compute_cycles: int, folds: int,
    tiles: float, weight_bytes: float, density: float,
) -> Traffic:
    """Traffic and timing of `layer`; `tiles` scales spatial activations, `density` the weights read."""
    w = device.word_bytes
    act = tiles if layer.spatial else 1.0
    if_bytes = layer.ifmap_elems * w * act
    of_bytes = layer.ofmap_elems * w * act
    zero = {"ifmap": 0.0, "filter": 0.0, "ofmap": 0.0}
    if layer.kind == "vector":
        sram_r = {**zero, "ifmap": if_bytes}
        sram_w = {**zero, "ofmap": of_bytes}
        on_chip = _fits(if_bytes, device.ifmap_sram_kib, device) and _fits(of_bytes, device.ofmap_sram_kib, device)
        dram_r = zero if on_chip else {**zero, "ifmap": if_bytes}
        dram_w = zero if on_chip else {**zero, "ofmap": of_bytes}
        return _timed(dram_r, dram_w, sram_r, sram_w, device, compute_cycles, 1)
    R, C = device.array_rows, device.array_cols
    M = math.ceil(layer.M * act)
    K_eff = layer.K * density
    G, N = layer.groups, layer.N
    rows, cols = {"os": (M, N), "ws": (layer.K, N), "is": (layer.K, M)}[dataflow]
    Fr, Fc = math.ceil(rows / R), math.ceil(cols / C)
    if_fits = _fits(if_bytes, device.ifmap_sram_kib, device)
    w_fits = _fits(weight_bytes, device.filter_sram_kib, device)
    of_fits = _fits(of_bytes, device.ofmap_sram_kib, device)
    if dataflow in ("ws", "os"):  # ifmap streamed once per column fold unless kept on chip
        if_extra, w_extra = _reuse(if_bytes, if_fits, Fc, device.ifmap_sram_kib, weight_bytes, w_fits, device)
        dram_if, dram_w = if_bytes + if_extra, weight_bytes + w_extra
        sram_r = {"ifmap": G * M * K_eff * Fc * w, "filter": weight_bytes * (Fr if dataflow == "os" else 1), "ofmap": 0.0}
        partial_passes = Fr - 1 if dataflow == "ws" else 0
    else:  # is: weights streamed once per column fold (of rows of M)
        w_extra, if_extra = _reuse(weight_bytes, w_fits, Fc, device.filter_sram_kib, if_bytes, if_fits, device)
        dram_if, dram_w = if_bytes + if_extra, weight_bytes + w_extra
        sram_r = {"ifmap": G * M * K_eff * w, "filter": weight_bytes * Fc, "ofmap": 0.0}
        partial_passes = Fr - 1
    spill = 0.0
    if partial_passes and not of_fits:
        # Either spill partial sums to DRAM once per extra row fold, or cut the rows into chunks
        # whose partial sums fit and re-fetch the weights once per chunk: the cheaper schedule wins.
        chunks = math.ceil(of_bytes / (device.ofmap_sram_kib * 1024 / (2 if device.double_buffered else 1)))
        refetch = 0.0 if w_fits else weight_bytes * (chunks - 1)
        if of_bytes * partial_passes <= refetch:
            spill = of_bytes * partial_passes
        else:
            dram_w += refetch
    sram_r["ofmap"] = of_bytes * partial_passes
    sram_w = {"ifmap": dram_if, "filter": dram_w, "ofmap": of_bytes * (1 + partial_passes)}
    dram_r = {"ifmap": dram_if, "filter": dram_w, "ofmap": spill}
    dram_wr = {"ifmap": 0.0, "filter": 0.0, "ofmap": of_bytes + spill}
    return _timed(dram_r, dram_wr, sram_r, sram_w, device, compute_cycles, max(folds, 1))


def _reuse(
    streamed: float, streamed_fits: bool, passes: int, streamed_kib: float, other: float, other_fits: bool,
    device: DeviceSpec,
) -> tuple[float, float]:
    """Extra DRAM bytes (streamed, other) of the cheaper loop order: re-read the streamed operand
    once per pass, or cut it into SRAM-sized chunks and re-read the other operand per chunk."""
    if streamed_fits or passes <= 1:
        return 0.0, 0.0
    chunks = math.ceil(streamed / (streamed_kib * 1024 / (2 if device.double_buffered else 1)))
    chunked = 0.0 if other_fits else other * (chunks - 1)
    reread = streamed * (passes - 1)
    return (reread, 0.0) if reread <= chunked else (0.0, chunked)


def _timed(dram_r, dram_w, sram_r, sram_w, device: DeviceSpec, compute: int, folds: int) -> Traffic:
    nbytes = sum(dram_r.values()) + sum(dram_w.values())
    transfer = nbytes / device.dram_bytes_per_cycle
    latency = device.dram_latency_ns * device.clock_mhz / 1000 if nbytes else 0.0
    if device.double_buffered:
        total = max(compute, transfer) + latency + transfer / folds
    else:
        total = compute + transfer + latency
    total_cycles = math.ceil(total)
    return Traffic(dram_r, dram_w, sram_r, sram_w, total_cycles, total_cycles - compute)


def write_dram_trace(layers: list[tuple[str, Traffic]], path: Path, max_lines: int = 2_000_000) -> int:
    """Write a Ramulator-style memory trace (`0x<address> R|W`, one 64-byte line a request).

    Each operand of each layer gets its own address region, requests in streaming order.
    Returns the number of requests written (truncated at `max_lines`).
    """
    region = 1 << 32
    written = 0
    with atomic_file(path, "w") as out:
        for index, (_, traffic) in enumerate(layers):
            requests = [("R", b) for b in traffic.dram_read.values()] + [("W", b) for b in traffic.dram_write.values()]
            for slot, (kind, nbytes) in enumerate(requests):
                base = (index * 8 + slot) * region
                lines = math.ceil(nbytes / LINE_BYTES)
                for line in range(min(lines, max_lines - written)):
                    out.write(f"0x{base + line * LINE_BYTES:x} {kind}\n")
                written += min(lines, max_lines - written)
                if written >= max_lines:
                    break
            if written >= max_lines:
                break
    return written
