"""`tridesign inspect FILE.onnx`: what a user's ONNX file holds, before compiling it (thin wrapper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tridesign.cli.output import emit_json, human, table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]


def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="An .onnx file.")],
    json_out: JsonFlag = False,
) -> None:
    """Inputs, outputs, opsets, operators, parameters and the symbolic dims `--input-shape` can fix."""
    from tridesign.compiler.onnx_io import format_shape, inspect_onnx

    report = inspect_onnx(file)
    if json_out:
        emit_json(report)
        return
    opsets = ", ".join(f"{o['domain']} {o['version']}" for o in report["opset_imports"])
    table(f"inspect {escape(str(file))}", ["field", "value"], [
        ["IR version", report["ir_version"]],
        ["opsets", opsets],
        *([["producer", escape(report["producer"])]] if report["producer"] else []),
        ["nodes", report["nodes"]],
        ["parameters", f"{human(report['parameters'])} ({report['parameter_bytes']:,} bytes)"],
    ])
    table("inputs and outputs", ["", "name", "shape", "dtype"], [
        [io, escape(t["name"]), format_shape(t["shape"]), t["dtype"]]
        for io, key in (("input", "inputs"), ("output", "outputs")) for t in report[key]
    ])
    table("operators", ["op", "count"], [[escape(op), n] for op, n in report["ops"].items()])
    if report["symbolic_dims"]:
        table("symbolic dims (--input-shape sets them)", ["dim", "where (tensor, axis)"], [
            [escape(d["name"]), ", ".join(f"{o['io']} {escape(repr(o['tensor']))} axis {o['axis']}" for o in d["occurs"])]
            for d in report["symbolic_dims"]
        ])


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
