"""`tridesign tune` (MetaSchedule into a persistent database) and `tridesign targets` (the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tridesign.cli.output import emit_json, table
from tridesign.errors import UsageError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]


def parse_host_port(value: str, option: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port), with a usage error that names the option."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{option} must be HOST:PORT, got {value!r}")
    return host, int(port)


def tune_cmd(
    source: Annotated[str, typer.Argument(help="A registered model name or any .onnx file.")],
    trials: Annotated[int, typer.Option("--trials", help="MetaSchedule measurements in all (spread over the kernels).")],
    target: Annotated[str, typer.Option(help="Target name (see `tridesign targets`).")] = "host",
    db: Annotated[Optional[Path], typer.Option("--db", help="Database directory (default: ~/.cache/tridesign/tuning/<target>).")] = None,
    config: Annotated[str, typer.Option(help="Model configuration of a registered model: tiny or paper.")] = "tiny",
    batch: Annotated[int, typer.Option(help="Batch size the kernels are tuned for.")] = 1,
    tracker: Annotated[Optional[str], typer.Option(help="TVM RPC tracker HOST:PORT, to measure on a board.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Device key the board registered with the tracker.")] = None,
    input_shape: Annotated[list[str], typer.Option("--input-shape", help="NAME=DIMS, e.g. x=1x3x224x224 (repeatable): fix an .onnx input's symbolic dims, as for compile.")] = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Tune a model's kernels with MetaSchedule; `compile --backend tvm` with the same target reuses them.

    Records are appended as they are measured: after an interrupt, run the same command again to
    continue from what was measured.
    """
    from tridesign.compiler.onnx_io import parse_input_shapes
    from tridesign.compiler.options import CompileOptions, input_shapes_option
    from tridesign.compiler.pipeline import resolve_source
    from tridesign.compiler.tvm.tuning import RemoteRunner, tune_model

    if trials < 1:
        raise UsageError("--trials must be at least 1")
    if (tracker is None) != (key is None):
        raise UsageError("--tracker and --key go together")
    remote = None
    if tracker is not None:
        host, port = parse_host_port(tracker, "--tracker")
        remote = RemoteRunner(host, port, key or "")
    options = CompileOptions(
        backend="tvm", target=target, config=config, batch=batch, input_shapes=input_shapes_option(parse_input_shapes(input_shape))
    )
    model = resolve_source(source, options)[0]
    report = tune_model(model, target, trials, db_dir=db, batch=batch, remote=remote)
    report["source"] = source
    if json_out:
        emit_json(report)
        return
    table(f"tune {source} for {report['target']}", ["", "value"], [
        ["database", report["database"]],
        ["trials", report["trials"]],
        ["records added", report.get("records_added", 0)],
        ["tuning time (s)", report["tuning_s"]],
        ["kernels with a tuned schedule", f"{report['kernels_tuned']} of {report['kernels']}"],
        ["convolutions on the tiled kernels", report.get("dense_convs", 0)],
        ["  of them by Winograd", report.get("winograd_convs", 0)],
        ["max-pools on the hand-written kernel", report.get("max_pools", 0)],
        ["pruned layers on sparse kernels", report.get("sparse_kernel_layers", 0)],
        ["conv shapes measured (s)", f"{report.get('dense_conv_shapes_measured', 0)} ({report.get('dense_conv_tiling_s', 0)})"],
    ])
    for note in report.get("notes", []):
        typer.echo(f"tridesign: note: {note}", err=True)
    if report["kernels_tuned"] == 0 and report["kernels"] > 0:
        typer.echo("tridesign: note: tuning produced no schedule; raise --trials", err=True)


def targets_cmd(json_out: JsonFlag = False) -> None:
    """List the named targets: CPU (and GPU) for TVM, cross compiler, and whether it runs here."""
    from tridesign.targets import cross_compiler_available, list_targets

    rows = [
        {
            "name": spec.name,
            "description": spec.description,
            "tvm": spec.tvm_json(),
            "cross_compiler": spec.cross_compiler,
            "cross_compiler_found": cross_compiler_available(spec),
            "runs_here": spec.runs_here,
        }
        for spec in list_targets()
    ]
    if json_out:
        emit_json({"targets": rows})
        return
    table("tridesign targets (details: --json, docs/targets.md)", ["target", "cpu", "cores", "gpu", "links with", "runs here"], [
        [
            r["name"],
            r["tvm"].get("host", r["tvm"]).get("mcpu", ""),
            r["tvm"].get("host", r["tvm"]).get("num-cores", ""),
            r["tvm"].get("arch", "") if r["tvm"]["kind"] == "cuda" else "",
            (r["cross_compiler"] or "host cc") + ("" if r["cross_compiler_found"] else " (missing: .tar)"),
            "yes" if r["runs_here"] else "no",
        ]
        for r in rows
    ])


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)
    app.command("targets")(targets_cmd)
