"""`tridesign videos synth`: synthetic evaluation video with MOT ground truth (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tridesign.cli.output import emit_json, table

videos_app = typer.Typer(help="Video made here: synthetic sequences with MOT-challenge ground truth.", no_args_is_help=True)


@videos_app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory (MOT layout: <seq>/gt/gt.txt, seqinfo.ini, the video).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same arguments give the same frames and gt.txt.")] = 0,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 120,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT (even numbers).")] = "640x360",
    objects: Annotated[int, typer.Option(help="Moving objects per video.")] = 6,
    speed: Annotated[float, typer.Option(help="Mean object speed in pixels per frame.")] = 4.0,
    occlusion: Annotated[float, typer.Option(help="Fraction of objects aimed at another one (crossings, occlusions).")] = 0.5,
    noise: Annotated[float, typer.Option(help="Gaussian sensor noise sigma in grey levels (0: none).")] = 0.0,
    camera: Annotated[str, typer.Option(help="static | pan (slow back-and-forth pan).")] = "static",
    videos: Annotated[int, typer.Option(help="Number of videos (sequences).")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")] = False,
) -> None:
    """Render textured moving objects on a textured background, with crossings, occlusions, objects
    entering and leaving; write each video with OpenCV and its MOT ground truth."""
    from tridesign.data.video import SynthConfig, parse_size, synthesize
    from tridesign.progress import step

    width, height = parse_size(size)
    cfg = SynthConfig(seed=seed, frames=frames, width=width, height=height, objects=objects, speed=speed,
                      occlusion=occlusion, noise=noise, camera=camera, videos=videos).validate()
    with step(f"rendering {videos} video(s) of {frames} frames at {width}x{height}"):
        summary = synthesize(cfg, out)
    if json_out:
        emit_json(summary)
        return
    table(f"synthetic videos: {out}", ["sequence", "video", "frames", "gt rows", "ids"],
          [[s["name"], s["video"], s["frames"], s["gt_rows"], s["ids_seen"]] for s in summary["sequences"]])


def register(app: typer.Typer) -> None:
    app.add_typer(videos_app, name="videos")
