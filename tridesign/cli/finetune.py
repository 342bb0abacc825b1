"""`tridesign finetune`: zeroth-order finetuning of an artifact with forward passes only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tridesign.cli.output import emit_json, table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]


def finetune_cmd(
    source: Annotated[Path, typer.Argument(help="Artifact directory (or .onnx file) to finetune; never modified.")],
    params: Annotated[str, typer.Option("--params", help="Trainable tensors: comma-separated fnmatch patterns, e.g. 'layer3.2.*,fc.*'.")],
    data: Annotated[Path, typer.Option("--data", help=".npz with one array per model input (or 'x') and labels 'y'.")],
    estimator: Annotated[str, typer.Option(help="rge (random directions) or cge (coordinates).")] = "rge",
    queries: Annotated[int, typer.Option(help="RGE directions q, or CGE coordinates per step.")] = 20,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    mu: Annotated[float, typer.Option(help="Smoothing radius of the finite differences.")] = 5e-3,
    optimizer: Annotated[str, typer.Option(help="sgd (momentum 0.9) or adam.")] = "sgd",
    direction: Annotated[str, typer.Option(help="RGE directions: gaussian or sphere (unit sphere, scaled by d).")] = "gaussian",
    difference: Annotated[str, typer.Option(help="forward (q+1 queries) or central (2q) differences.")] = "forward",
    batch: Annotated[int, typer.Option(help="Mini-batch rows per step.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of batches and perturbations.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (resume after interrupt).")] = 25,
    sparse: Annotated[bool, typer.Option(help="CGE on nonzero weights only (a pruned model's mask) plus biases.")] = False,
    prompt_pad: Annotated[int, typer.Option(help="Prompt mode: add a TVP framepad prompt this many pixels wide (use --params 'prompt.*').")] = 0,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="New artifact directory (default: SOURCE-zo).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Finetune with zeroth-order gradient estimates through the inference engine (no autograd)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tridesign.deploy.zo.finetune import FinetuneConfig
    from tridesign.workflows.finetune import finetune_artifact
    from tridesign.progress import stderr

    config = FinetuneConfig(
        selector=params, estimator=estimator, queries=queries, steps=steps, lr=lr, mu=mu, optimizer=optimizer,
        direction=direction, difference=difference,
        batch=batch, seed=seed, checkpoint_every=checkpoint_every, sparse=sparse,
    )
    columns = (TextColumn("ZO finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("zo", total=steps, loss="-")
        report = finetune_artifact(
            source, data, config, out, on_step=lambda t, loss: progress.update(task, completed=t, loss=f"{loss:.4f}"),
            prompt_pad=prompt_pad,
        )
    if json_out:
        emit_json(report)
        return
    table(f"ZO finetune {source} -> {report['output']}", ["", "before", "after"], [
        ["loss", report["before"]["loss"], report["after"]["loss"]],
        ["accuracy", report["before"]["accuracy"], report["after"]["accuracy"]],
    ])
    table("run", ["setting", "value"], [
        ["trainable parameters", report["trainable"]],
        ["estimator", f"{estimator} ({queries} queries/step)"],
        ["steps", steps],
        ["loss evaluations", report["queries"]],
        ["resumed from step", report["resumed_from_step"]],
    ])


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
