"""`tridesign codesign`: the joint data x model x circuit search (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tridesign.cli.output import emit_json, fmt, stdout, table


def codesign_cmd(
    source: Annotated[str, typer.Argument(help="The registered model to co-design: qdtrack_center (video) or resnet20_digits (classification).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Study folder: study.db, points.jsonl, pareto.json, report.html, summary.json; rerun the same command to resume.")],
    task: Annotated[str, typer.Option(help="video (MOTA on MOT sequences) or classification (top-1).")] = "video",
    data: Annotated[Optional[Path], typer.Option(help="video: a folder of MOT sequences (`tridesign videos synth`); classification: an .npz with x and y (default: the digits held-out split).")] = None,
    arch: Annotated[str, typer.Option(help="Preset name or arch YAML the circuit axis varies.")] = "tridesign-alveo",
    space: Annotated[Optional[Path], typer.Option(help="Space YAML (data / model / circuit knobs and their values); default: the built-in space of the task.")] = None,
    budget: Annotated[Optional[int], typer.Option(help="Distinct (data, model) points to measure (each circuit point of each is simulated).")] = None,
    time_budget: Annotated[Optional[float], typer.Option(help="Stop proposing new points after this many seconds.")] = None,
    sampler: Annotated[str, typer.Option(help="auto (grid when the space fits the budget, else nsga2), grid, nsga2 or tpe.")] = "auto",
    executor: Annotated[str, typer.Option(help="local (in-process, or processes with --workers > 1) or ray (a local Ray instance unless one runs).")] = "local",
    workers: Annotated[int, typer.Option(help="Points measured at once.")] = 1,
    backend: Annotated[str, typer.Option(help="Backend of the compiled artifacts that are scored: ort or tvm.")] = "ort",
    config: Annotated[Optional[str], typer.Option(help="Model config (default: track for video, tiny for classification).")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    tolerance: Annotated[float, typer.Option(help="Accuracy the chosen point may lose against the dense baseline.")] = 0.02,
    report: Annotated[Optional[Path], typer.Option(help="HTML report path (default OUT/report.html).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json on stdout instead of tables.")] = False,
) -> None:
    """Search data sparsity x model sparsity x circuit together, with measured accuracy on the Pareto front.

    Each (data, model) point is measured for real (the pruned/quantized model compiled and run on
    the data, the data sparsity measured); each circuit point is simulated on it. Interrupted runs
    resume from OUT/study.db when the same command is given again.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tridesign.errors import TridesignError
    from tridesign.progress import stderr
    from tridesign.workflows.codesign import CodesignJob, run_codesign

    job = CodesignJob(source=source, task=task, arch=arch, data=data, space=space, budget=budget, time_budget=time_budget,
                      executor=executor, workers=workers, sampler=sampler, seed=seed, backend=backend, config=config,
                      tolerance=tolerance).validate()
    columns = (TextColumn("codesign"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    try:
        with Progress(*columns, console=stderr, transient=True) as progress:
            bar = progress.add_task("", total=None)
            summary = run_codesign(job, out, report, on_progress=lambda done, total, label: progress.update(
                bar, completed=done, total=total, description=label[:70]))
    except KeyboardInterrupt:
        raise TridesignError(f"interrupted: {out}/study.db keeps every finished point; give the same command to resume") from None
    if json_out:
        emit_json(summary)
        return
    base, chosen = summary["baseline"], summary["chosen"]
    rows = [["(data, model) points measured", f"{summary['measured_points']} of {summary['space_points']} ({summary['sampler']})"],
            ["design points / on the front", f"{summary['points']} / {summary['pareto']}"],
            ["stopped", summary["stopped"]],
            ["dense accuracy / energy", f"{fmt(base['accuracy'])} / {fmt(base['energy_per_frame'])}"]]
    if chosen is not None:
        rows += [["chosen accuracy", fmt(chosen["accuracy"])],
                 ["chosen energy (x less than dense)", f"{fmt(chosen['energy_per_frame'])} ({fmt(chosen['energy_vs_dense'])}x)"],
                 ["chosen latency ms / area mm2", f"{fmt(chosen['latency_ms'])} / {fmt(chosen['area_mm2'])}"],
                 ["chosen data / model / circuit", f"{chosen['data']} / {chosen['model']} / {chosen['circuit'] or 'arch'}"]]
    table(f"codesign {source} -> {out}", ["", "value"], rows)
    for failure in summary["failed"]:
        stderr.print(f"[yellow]note:[/] point {failure['point']} failed: {failure['error']}", highlight=False, soft_wrap=True)
    for command in summary["commands"]:
        stdout.print(command, highlight=False, soft_wrap=True)
    stdout.print(f"report: {summary['report']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("codesign")(codesign_cmd)
