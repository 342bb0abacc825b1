"""`tridesign deploy` and `tridesign run BUNDLE`: bundles for a board, and running them (thin wrappers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tridesign.cli.output import emit_json, model_config, stdout, table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]


def deploy_cmd(
    source: Annotated[str, typer.Argument(help="An artifact directory, a registered model name or an .onnx file.")],
    target: Annotated[str, typer.Option(help="Target name (see `tridesign targets`): host, jetson-orin-nano, ...")] = "host",
    out: Annotated[Path, typer.Option("-o", "--out", help="Bundle to write: NAME.tar.gz (or a folder with --dir).")] = Path("bundle.tar.gz"),
    as_dir: Annotated[bool, typer.Option("--dir", help="Write the bundle as a folder instead of a .tar.gz.")] = False,
    backend: Annotated[Optional[str], typer.Option(help="ort or tvm (default: ort for host, tvm for a board).")] = None,
    tune: Annotated[int, typer.Option(help="MetaSchedule tuning trials (tvm); 0 = untuned.")] = 0,
    prune: Annotated[Optional[str], typer.Option(help="Sparsity SPEC or per-layer YAML, as for compile.")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="int8: static QDQ quantization, per-channel weights.")] = None,
    config: Annotated[Optional[str], typer.Option(help="Model configuration for a registered model (default: tiny, said on stderr).")] = None,
    input_shape: Annotated[list[str], typer.Option("--input-shape", help="NAME=DIMS, e.g. x=1x3x224x224 (repeatable): fix an .onnx input's symbolic dims, as for compile.")] = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Bundle a model for a target: verified ONNX, compiled module, reference data, board runner, README."""
    from tridesign.compiler.onnx_io import parse_input_shapes
    from tridesign.compiler.options import CompileOptions, input_shapes_option
    from tridesign.sparsity_plan import load_plan
    from tridesign.workflows.deploy import deploy

    options = CompileOptions(
        backend=backend or ("ort" if target == "host" else "tvm"), target=target, tune_trials=tune,
        prune=load_plan(prune) if prune else None, quantize=quantize, config=model_config(source, config),
        input_shapes=input_shapes_option(parse_input_shapes(input_shape)),
    )
    meta = deploy(source, options, out, as_dir)
    if json_out:
        emit_json(meta)
        return
    table(f"bundle {out}", ["field", "value"], [
        ["target", meta["target"]["name"]],
        ["engines (in order)", ", ".join(meta["engines"])],
        ["files", len(meta["files"])],
        ["bytes", sum(f["bytes"] for f in meta["files"].values())],
        *([["TensorRT", meta["tensorrt"]["trtexec"]]] if "tensorrt" in meta else []),
    ])
    stdout.print(f"on the board: python3 -m tridesign_board {out.name.removesuffix('.tar.gz')} (see its README.md)")


def print_bundle_report(report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    table(f"run {report['bundle']} on {report['engine']} ({report['precision']})", ["metric", "value"], [
        ["latency median ms", lat["median"]], ["latency p90 ms", lat["p90"]], ["latency p99 ms", lat["p99"]],
        *([["mean power W", report["power"]["mean_w"]]] if "power" in report else []),
    ])
    if "comparison" in report:
        table("outputs vs the bundle's reference", ["output", "max abs err", "max rel err", "allowed", "passed"], [
            [r["output"], r.get("max_abs_err", r.get("error")), r.get("max_rel_err", ""), r.get("allowed", ""), r["passed"]]
            for r in report["comparison"]
        ])
    for note in report["notes"]:
        stdout.print(f"[yellow]note:[/] {note}")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_cmd)
