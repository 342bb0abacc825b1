"""`tridesign sparsity DIR_OR_ONNX`: the per-layer model-sparsity report (a thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tridesign.cli.output import emit_json, human, table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]


def sparsity_cmd(
    source: Annotated[Path, typer.Argument(help="An .onnx file or an artifact directory from `tridesign compile`.")],
    json_out: JsonFlag = False,
) -> None:
    """Per layer: density, pattern, dense vs effective MACs, and whether the backend ran it sparse."""
    from tridesign.compiler.sparsity.inspect import layer_rows, load, summary

    model, manifest = load(source)
    rows = layer_rows(model, manifest)
    totals = summary(rows)
    if json_out:
        emit_json({"source": str(source), "layers": rows, "summary": totals})
        return
    table(
        f"model sparsity: {source}",
        ["layer", "op", "shape", "pattern", "density", "dense MACs", "effective MACs", "ran"],
        [[r["layer"], r["op"], "x".join(map(str, r["shape"])), r["pattern"], r["density"],
          human(r["dense_macs"]), human(r["effective_macs"]), r["ran"]] for r in rows],
    )
    reduction = totals["mac_reduction"]
    table(
        "total",
        ["layers", "run sparse", "dense MACs", "effective MACs", "MAC reduction"],
        [[totals["layers"], totals["sparse_layers_run"], human(totals["dense_macs"]), human(totals["effective_macs"]),
          f"{reduction:.2f}x" if reduction else "-"]],
    )


def register(app: typer.Typer) -> None:
    app.command("sparsity")(sparsity_cmd)
