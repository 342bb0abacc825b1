"""Simulation outputs: summary and per-layer rows, CSV, and a self-contained HTML report.

The HTML embeds its plots as PNG data URIs (matplotlib, Agg backend), so a report is one file that
can be mailed or attached to CI: cycles per layer (compute vs stall), a roofline of every GEMM
layer against its device, and the energy breakdown by component and operand.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Any

import jinja2

from tridesign.atomic import atomic_file, write_text_atomic
from tridesign.hwsim.simulate import SimResult
from tridesign.hwsim.spec import SystemSpec

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)
LAYER_COLUMNS = ["name", "op_type", "stage", "macs", "useful_macs", "compute_cycles", "stall_cycles", "cycles",
                 "latency_ms", "util_effective", "util_dense_equiv", "weight_density", "dram_bytes", "sram_bytes",
                 "energy"]


def summary_rows(result: SimResult) -> list[list[Any]]:
    t = result.totals
    unit = result.energy_unit
    rows = [
        ["arch", result.arch], ["dataflow / mode", f"{result.dataflow} / {result.mode}"],
        ["MACs (dense)", t["macs"]], ["MACs (useful)", t["useful_macs"]],
        ["cycles", t["cycles"]], ["stall cycles", t["stall_cycles"]],
        ["latency ms", t["latency_ms"]], ["frame interval ms", t["frame_interval_ms"]],
        ["FPS", t["fps"]], ["effective FPS", t["effective_fps"]],
        ["utilization (effective)", t["util_effective"]], ["utilization (dense-equiv.)", t["util_dense_equiv"]],
        ["DRAM MB", t["dram_bytes"] / 1e6], ["SRAM MB", t["sram_bytes"] / 1e6],
        [f"energy / frame ({unit})", t["energy_per_frame"]], ["area mm²", t["area_mm2"]],
    ]
    if t["power_w"] is not None:
        rows += [["energy / frame J", t["energy_per_frame_j"]], ["power W", t["power_w"]]]
    ds = result.data_sparsity
    if ds is not None:
        tiles = (f"{len(ds.layer_active_fraction)} layers measured, mean area {ds.active_tile_fraction:.3f}"
                 if ds.layer_active_fraction else f"{ds.active_tile_fraction:g} of every spatial layer")
        rows += [["data sparsity from", ds.source or "(no source recorded)"], ["frames kept", ds.frame_keep_fraction],
                 ["active tiles", tiles], [f"energy / input frame ({unit})", t["energy_per_input_frame"]]]
        if t["energy_per_input_frame_j"] is not None:
            rows.append(["energy / input frame J", t["energy_per_input_frame_j"]])
    return rows


def layer_rows(result: SimResult) -> list[list[Any]]:
    return [[getattr(r, c) if c != "energy" else r.energy_total_pj for c in LAYER_COLUMNS] for r in result.layers]


def write_csv(result: SimResult, path: Path) -> None:
    with atomic_file(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(LAYER_COLUMNS)
        writer.writerows(layer_rows(result))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(result: SimResult, system: SystemSpec) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result.layers
    x = range(len(layers))
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(x, [r.compute_cycles for r in layers], label="compute")
    ax.bar(x, [r.stall_cycles for r in layers], bottom=[r.compute_cycles for r in layers], label="DRAM stall")
    ax.set(xlabel="layer", ylabel="cycles", title="Cycles per layer")
    ax.legend()
    cycles = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    gemm = [r for r in layers if r.macs and r.dram_bytes]
    for name, dev in {s.device: system.devices[s.device] for s in result.stages}.items():
        peak, bw = dev.pes, dev.dram_bytes_per_cycle
        xs = [0.01, peak / bw, 1e5]
        ax.plot(xs, [min(peak, v * bw) for v in xs], label=f"roof {name}")
    ax.scatter([r.useful_macs / r.dram_bytes for r in gemm],
               [r.useful_macs / max(r.cycles, 1) for r in gemm], s=12, c="k", label="layers")
    ax.set(xscale="log", yscale="log", xlabel="MAC / DRAM byte", ylabel="MAC / cycle", title="Roofline")
    ax.legend(fontsize=7)
    roofline = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    parts = {k.removeprefix("energy."): v for k, v in result.totals.items() if k.startswith("energy.") and v}
    ax.barh(list(parts), list(parts.values()))
    ax.set(xscale="log", xlabel=f"{result.energy_unit} (log scale)", title="Energy per frame by component / operand")
    energy = _png(fig)
    return {"cycles": cycles, "roofline": roofline, "energy": energy}


def write_html(result: SimResult, system: SystemSpec, path: Path) -> None:
    html = TEMPLATES.get_template("report.html.j2").render(
        result=result, summary=summary_rows(result), columns=LAYER_COLUMNS, rows=layer_rows(result),
        plots=_plots(result, system), system=system, fmt=_fmt,
    )
    write_text_atomic(path, html)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
