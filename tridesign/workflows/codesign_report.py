"""The co-design report: Pareto plots coloured by which axes changed, the top points, and the
commands that reproduce the chosen point with `track`/`compile`/`simulate`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tridesign.atomic import write_text_atomic
from tridesign.workflows.codesign_eval import Sequence
from tridesign.workflows.codesign_space import DENSE, NO_DROP

TOP = 25
COLOURS = {"none": "#000000", "data": "#1f77b4", "model": "#2ca02c", "circuit": "#ff7f0e", "data+model": "#17becf",
           "data+circuit": "#9467bd", "model+circuit": "#bcbd22", "data+model+circuit": "#d62728"}


def _model_flags(model: dict[str, Any]) -> list[str]:
    flags = []
    if model["prune"] != DENSE:
        flags += ["--prune", model["prune"]]
        if model["recovery_steps"]:
            flags += ["--finetune-steps", str(model["recovery_steps"])]
    if model["int8"]:
        flags += ["--quantize", "int8"]
    return flags


def reproduce(source: str, config: str, backend: str, sequences: tuple[Sequence, ...], row: dict[str, Any],
              out: Path) -> list[str]:
    """Shell commands that rebuild the chosen point's model, rerun its measurement and simulate it
    (video: one `track` per sequence; `sequences` is empty for classification)."""
    base = ["--config", config, "--backend", backend]
    commands = [["tridesign", "compile", source, *base, *_model_flags(row["model"]), "-o", str(out / "chosen_artifact")]]
    arch = str(out / "chosen_arch.yaml")
    if sequences:
        data = row["data"]
        sparsity = [*(["--frame-drop", data["frame_drop"]] if data["frame_drop"] != NO_DROP else []),
                    *(["--patch-drop", f"{data['patch_drop']:g}", "--patch", str(data["patch_px"])] if data["patch_drop"] else [])]
        for seq in sequences:
            commands.append(["tridesign", "track", str(seq.video), "--gt", str(seq.gt), "--model", source, *base,
                             *sparsity, *_model_flags(row["model"]), "--no-video", "-o", str(out / "chosen_track" / seq.name)])
        commands.append(["tridesign", "simulate", str(out / "runs" / row["key"] / "detector.onnx"), "--arch", arch])
    else:
        commands.append(["tridesign", "simulate", str(out / "chosen_artifact"), "--arch", arch])
    return [shlex.join(c) for c in commands]


def _plots(rows: list[dict[str, Any]], front: list[int], chosen: int | None, accuracy: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tridesign.hwsim.report import _png

    plots = []
    unit = rows[0]["energy_unit"] if rows else ""
    for key, label in ((("energy_per_frame", f"energy per input frame ({unit})")), ("latency_ms", "latency ms")):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for changed, colour in COLOURS.items():
            group = [r for r in rows if r["changed"] == changed]
            if group:
                ax.scatter([r[key] for r in group], [r["accuracy"] for r in group], s=12, c=colour, alpha=0.45,
                           label=f"{changed} changed" if changed != "none" else "dense baseline")
        ax.scatter([rows[i][key] for i in front], [rows[i]["accuracy"] for i in front], s=40, facecolors="none",
                   edgecolors="k", linewidths=1.0, label="Pareto front (4 objectives)")
        if chosen is not None:
            ax.scatter([rows[chosen][key]], [rows[chosen]["accuracy"]], s=160, marker="*", c="gold", edgecolors="k",
                       label="chosen", zorder=5)
        ax.set(xscale="log", xlabel=label, ylabel=accuracy, title=f"{accuracy} vs {label.split(' (')[0]}")
        ax.legend(fontsize=6, loc="lower right")
        plots.append(_png(fig))
    return plots


def write_report(path: Path, rows: list[dict[str, Any]], front: list[int], chosen: int | None, summary: dict[str, Any]) -> None:
    accuracy = "MOTA" if summary["task"] == "video" else "top-1"
    top = sorted(front, key=lambda i: (-rows[i]["accuracy"], rows[i]["energy_per_frame"]))[:TOP]
    env = Environment(loader=PackageLoader("tridesign", "templates"), autoescape=select_autoescape())
    html = env.get_template("codesign.html.j2").render(
        summary=summary, plots=_plots(rows, front, chosen, accuracy), rows=rows, top=top, chosen=chosen,
        accuracy=accuracy, n_front=len(front),
    )
    write_text_atomic(path, html)
