"""`tridesign track`: multi-object tracking on a video with data and model sparsity (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tridesign.cli.output import emit_json, fmt, human, stdout, table


def track_cmd(
    source: Annotated[str, typer.Argument(help="A video OpenCV reads, or a directory of images (sorted by name).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory: results.txt, annotated video, summary.json, detector.onnx.")],
    model: Annotated[Optional[str], typer.Option(help="Detector: a compiled artifact directory or a registered name (default: qdtrack_center, trained here and cached).")] = None,
    config: Annotated[Optional[str], typer.Option(help="Config of a registered detector (default: track).")] = None,
    backend: Annotated[str, typer.Option(help="ort | tvm (tvm skips dropped patches on the tile-sparse kernels).")] = "ort",
    frame_drop: Annotated[Optional[str], typer.Option(help="Temporal sparsity: a rate (0.4 = drop 40 % of frames, evenly) or diff[:T] (drop when the last three frames barely changed).")] = None,
    patch_drop: Annotated[float, typer.Option(help="Spatial sparsity: fraction of each kept frame's area dropped (lowest edge energy first; the paper's 0.2).")] = 0.0,
    patch: Annotated[int, typer.Option(help="Patch side in frame pixels.")] = 60,
    prune: Annotated[Optional[str], typer.Option(help="Prune a registered detector before compiling, e.g. pattern:4:0.9 (the paper's).")] = None,
    finetune_steps: Annotated[int, typer.Option(help="Recovery training steps after --prune.")] = 0,
    quantize: Annotated[Optional[str], typer.Option(help="int8: quantize a registered detector (static QDQ, per-channel weights, calibrated on training frames).")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="MOT-challenge gt.txt: score MOTA, IDF1 and HOTA with TrackEval.")] = None,
    video: Annotated[bool, typer.Option(help="Write the annotated video.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json on stdout instead of tables.")] = False,
) -> None:
    """Track objects in a video: frame and patch dropping, a compiled (optionally pruned) detector,
    Kalman + Hungarian IoU association; with --gt, MOTA/IDF1/HOTA from TrackEval."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tridesign.progress import stderr
    from tridesign.sparsity_plan import load_plan
    from tridesign.workflows.track import TrackOptions, track

    options = TrackOptions(
        model=model, config=config, backend=backend, frame_drop=frame_drop, patch_drop=patch_drop, patch_px=patch,
        prune=load_plan(prune) if prune else None, finetune_steps=finetune_steps, quantize=quantize, gt=gt,
        video=video,
    ).validate()
    columns = (TextColumn("tracking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("track", total=None)
        summary = track(source, out, options, on_frame=lambda done, total: progress.update(task, completed=done, total=total))
    if json_out:
        emit_json(summary)
        return
    macs, fps = summary["macs"], summary["fps"]
    table(f"track {source} -> {out}", ["metric", "value"], [
        ["frames (kept)", f"{summary['frames']} ({summary['kept_frames']})"],
        ["mean active patch fraction", fmt(summary["mean_active_patch_fraction"])],
        ["MACs dense / computed", f"{human(macs['dense_total'])} / {human(macs['computed_total'])}"],
        ["MACs the mask needs", human(macs["active_total"])],
        ["FPS (pipeline, no drawing)", fmt(fps["pipeline"])],
        ["detector ms per kept frame", fmt(fps["detector_ms_per_kept_frame"])],
        *[[name, fmt(value)] for name, value in summary.get("metrics", {}).items() if name in ("MOTA", "IDF1", "HOTA", "IDSW")],
    ])
    for note in summary["notes"]:
        stdout.print(f"[yellow]note:[/] {note}")


def register(app: typer.Typer) -> None:
    app.command("track")(track_cmd)
