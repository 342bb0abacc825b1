"""`simulate` and `sweep`: the accelerator simulator from the command line (thin wrappers)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from tridesign.cli.output import emit_json, table
from tridesign.errors import UsageError
from tridesign.progress import stderr

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
ArchOpt = Annotated[str, typer.Option("--arch", help="Preset name (tridesign-alveo, zynq-ultrascale, eyeriss-like, tpu-like) or a YAML file.")]


InputShapeOpt = Annotated[list[str], typer.Option(
    "--input-shape",
    help="NAME=DIMS, e.g. x=1x3x224x224 (repeatable): fix the symbolic dims of an .onnx input, which "
         "are otherwise counted as 1 (`tridesign inspect FILE.onnx` lists them).",
)]


def load_source(source: str, config: str = "tiny", input_shapes: list[str] | None = None):
    """The workload of SOURCE (tridesign.artifact.open_source); a registered model is exported to a temp dir.

    A `tridesign track` output directory is its detector.onnx, which must carry the data sparsity
    measured on the video: simulating it without would report assumed (dense) numbers as measured.
    `input_shapes` (--input-shape items) fix an ONNX file's symbolic input dims first, as `compile`
    does; the workload counts every dim left symbolic as 1, said on stderr one line per input.
    """
    import onnx
    from rich.markup import escape

    from tridesign.artifact import MODEL_FILE, TRACK_MODEL, open_source
    from tridesign.compiler import onnx_io
    from tridesign.errors import TridesignError
    from tridesign.hwsim.workload import load_workload

    shapes = onnx_io.parse_input_shapes(input_shapes or [])
    opened = open_source(source, allow=("registered", "onnx", "artifact", "track"))
    if opened.onnx_path is not None:
        model = onnx_io.fix_input_shapes(onnx_io.load_onnx(opened.onnx_path), shapes) if shapes else onnx.load(str(opened.onnx_path))
        for item in onnx_io.io_signature(model)["inputs"]:
            symbolic = [f"{d} (axis {axis})" for axis, d in enumerate(item["shape"]) if isinstance(d, str)]
            if symbolic:
                note = (f"input {item['name']!r} {onnx_io.format_shape(item['shape'])}: symbolic dims {', '.join(symbolic)} "
                        f"counted as 1; set them with --input-shape {item['name']}=DIMS")
                stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        label = opened.label if opened.kind in ("artifact", "track") else opened.onnx_path.stem
        workload = load_workload(model, name=label)
        if opened.kind == "track" and workload.data_sparsity is None:
            raise TridesignError(f"{source}: {TRACK_MODEL} carries no tridesign.data_sparsity record; rerun `tridesign track`")
        return workload
    from tridesign.compiler.export import export_model
    from tridesign.progress import step

    if shapes:
        raise UsageError(f"--input-shape is for .onnx files: {source}'s config ({config}) fixes its input shapes")
    with tempfile.TemporaryDirectory() as tmp, step(f"exporting {source}:{config}"):
        onnx_path = Path(tmp) / MODEL_FILE
        export_model(source, config, onnx_path)
        return load_workload(onnx_path, name=f"{source}:{config}")


def simulate_cmd(
    source: Annotated[str, typer.Argument(help="An .onnx file, an artifact directory, a `tridesign track` output directory (simulated with the data sparsity measured on its video), or a registered model name.")],
    arch: ArchOpt = "tridesign-alveo",
    dataflow: Annotated[Optional[str], typer.Option(help="ws, os or is (default: the arch's).")] = None,
    mode: Annotated[str, typer.Option(help="exact (the PE array's counts) or scalesim (SCALE-Sim v2 compute cycles).")] = "exact",
    config: Annotated[str, typer.Option(help="Model config when SOURCE is a registered model.")] = "tiny",
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write per-layer rows to this CSV file.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report with plots.")] = None,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="Write a Ramulator-style DRAM trace.")] = None,
    check_pe: Annotated[bool, typer.Option("--check-pe", help="Also run small GEMM layers step by step on the PE array and compare.")] = False,
    input_shape: InputShapeOpt = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Simulate a model on an accelerator: cycles, latency, FPS, utilization, traffic and energy.

    The model's `tridesign.data_sparsity` record (kept frames, active tiles, per layer when measured)
    is simulated where the arch skips tiles and frames: for `tridesign track ... -o OUT`,
    `tridesign simulate OUT` gives the frame interval, effective FPS and J per frame for the
    sparsity measured on that video, and says where the record came from. Layers go to the arch's
    pipeline stages by ONNX node name; a layer no stage matches is refused, and a stage that
    receives no layer is a note.
    """
    from rich.markup import escape

    from tridesign.hwsim.report import layer_rows, summary_rows, write_csv, write_html
    from tridesign.hwsim.simulate import simulate
    from tridesign.hwsim.spec import load_spec

    if dataflow not in (None, "ws", "os", "is"):
        raise UsageError(f"--dataflow must be ws, os or is, not {dataflow!r}")
    if mode == "true":
        stderr.print("[yellow]note:[/] --mode true is now called --mode exact")
        mode = "exact"
    if mode not in ("exact", "scalesim"):
        raise UsageError(f"--mode must be exact or scalesim, not {mode!r}")
    system = load_spec(arch)
    workload = load_source(source, config, input_shape)
    result = simulate(workload, system, dataflow, mode)
    for note in result.notes:
        stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if csv_out:
        write_csv(result, csv_out)
    if report:
        write_html(result, system, report)
    if trace:
        from tridesign.hwsim.memory import write_dram_trace

        write_dram_trace([(r.name, r.traffic) for r in result.layers], trace)
    checks = _check_pe(workload, system, result.dataflow) if check_pe else None
    if json_out:
        emit_json(result.to_dict() | ({"pe_check": checks} if checks is not None else {}))
        return
    if checks is not None:
        table("step-by-step PE array vs closed form", ["layer", "stepped", "closed form", "values ok", "agree"],
              [list(c.values()) for c in checks])
    table(f"{result.workload} on {result.arch}", ["metric", "value"], summary_rows(result))
    table("layers", ["layer", "op", "stage", "MACs", "cycles", "stall", "util", "DRAM B", "energy"],
          [[r[0], r[1], r[2], r[3], r[7], r[6], r[9], r[12], r[14]] for r in layer_rows(result)])


def _check_pe(workload, system, dataflow: str) -> list[dict]:
    from tridesign.errors import TridesignError
    from tridesign.hwsim.pe_array import check_layers

    checks = check_layers(workload, next(iter(system.devices.values())), dataflow)
    bad = [c["layer"] for c in checks if not (c["agree"] and c["values_ok"])]
    if bad:
        raise TridesignError(f"step-by-step PE array disagrees with the closed form on {', '.join(bad)}")
    return checks


def sweep_cmd(
    source: Annotated[str, typer.Argument(help="An .onnx file, an artifact directory, or a registered model name.")],
    arch: ArchOpt = "tridesign-alveo",
    param: Annotated[list[str], typer.Option("--param", help="NAME=V1,V2,... over a device field, e.g. array_rows=16,32.")] = [],  # noqa: B006
    dataflow: Annotated[list[str], typer.Option("--dataflow", help="Dataflows to try (repeatable).")] = [],  # noqa: B006
    weights: Annotated[list[str], typer.Option("--weights", help="Weight sparsity what-ifs, in the --prune grammar: dense, unstructured:0.9, nm:2:4, block:0.8:4x4, pattern:4:0.9.")] = [],  # noqa: B006
    tiles: Annotated[str, typer.Option(help="Active-tile fractions, comma separated.")] = "1",
    frames: Annotated[str, typer.Option(help="Frame-keep fractions, comma separated.")] = "1",
    executor: Annotated[str, typer.Option(help="local (process pool), serial or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 2,
    config: Annotated[str, typer.Option(help="Model config when SOURCE is a registered model.")] = "tiny",
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the sweep JSON here.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the Pareto HTML report here.")] = None,
    input_shape: InputShapeOpt = [],  # noqa: B006
    json_out: JsonFlag = False,
) -> None:
    """Sweep arch parameters x dataflow x sparsity; report the latency/energy/area Pareto front."""
    from rich.markup import escape
    from rich.progress import Progress

    from tridesign.hwsim.simulate import assign_stages, stage_notes
    from tridesign.hwsim.sparsity import SparsitySetting, parse_what_if
    from tridesign.hwsim.spec import load_spec
    from tridesign.hwsim.sweep import grid, run_sweep, sweep_front, write_sweep
    from tridesign.progress import stderr

    params = {}
    for item in param:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise UsageError(f"--param {item!r}: expected NAME=V1,V2,...")
        params[name.strip()] = [_number(v) for v in values.split(",")]
    for flow in dataflow:
        if flow not in ("ws", "os", "is"):
            raise UsageError(f"--dataflow must be ws, os or is, not {flow!r}")
    what_ifs = [parse_what_if(w) for w in (weights or ["dense"])]
    settings = [SparsitySetting(w, _number(t), _number(f)) for w in what_ifs
                for t in tiles.split(",") for f in frames.split(",")]
    system = load_spec(arch)
    workload = load_source(source, config, input_shape)
    for note in stage_notes(workload, system, assign_stages(workload, system)):
        stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    points = grid(params, list(dataflow), settings)
    with Progress(transient=True, console=stderr) as bar:
        task = bar.add_task(f"sweeping {len(points)} points", total=len(points))
        rows = run_sweep(workload, system, points, executor, workers, lambda n: bar.advance(task, n))
    front = sweep_front(rows)
    payload = write_sweep(rows, front, out, report, f"{workload.name} on {system.name}")
    if json_out:
        emit_json(payload)
        return
    keys = [k for k in rows[0] if k not in ("frame_interval_ms", "dram_bytes")]
    table(f"Pareto front ({len(front)} of {len(rows)} points)", keys, [[rows[i][k] for k in keys] for i in front])


def _number(text: str) -> float | int | bool | str:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("sweep")(sweep_cmd)
