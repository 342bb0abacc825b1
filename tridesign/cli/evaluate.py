"""`tridesign evaluate ARTIFACT`: the artifact's metric beside its uncompressed model's (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from tridesign.cli.output import emit_json, stdout, table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]


def evaluate_cmd(
    artifact: Annotated[Path, typer.Argument(help="A compiled artifact directory.")],
    data: Annotated[Optional[str], typer.Option(
        help="Labelled data: an .npz with an array per input (or x) and labels y, or `heldout`, the digits "
             "models' held-out split (their default).",
    )] = None,
    labels: Annotated[Optional[str], typer.Option(help="Labels: FILE.npy, FILE.npz or FILE.npz:KEY (default: y in --data).")] = None,
    metric: Annotated[str, typer.Option(help="top1, top5 (class labels), mse (target arrays) or iou (x1,y1,x2,y2 boxes).")] = "top1",
    json_out: JsonFlag = False,
) -> None:
    """Score an artifact and the model it was compressed from (before --prune/--quantize) on the same data."""
    from tridesign.compiler.evaluate import evaluate_artifact

    report = evaluate_artifact(artifact, data, labels, metric)
    if json_out:
        emit_json(report)
        return
    table(f"evaluate {escape(str(artifact))}", ["field", "value"], accuracy_rows(report))
    for note in report["notes"]:
        stdout.print(f"[yellow]note:[/] {escape(note)}")


def accuracy_rows(record: dict[str, Any]) -> list[list]:
    """The accuracy record as table rows; `compile --eval-data` prints the same rows."""
    metric = record["metric"]
    rows: list[list] = [
        ["data", escape(f"{record['data']} ({record['samples']} samples)")],
        [f"{metric} artifact", record["artifact"]],
    ]
    if record["reference"] is not None:
        rows += [[f"{metric} uncompressed", record["reference"]], [f"{metric} drop", record["drop"]]]
    if record.get("max_drop") is not None:
        rows.append(["max accuracy drop", record["max_drop"]])
    return rows


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
