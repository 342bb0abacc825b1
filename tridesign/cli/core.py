"""Core commands: models, export, compile, profile, run, demo. Each is a thin wrapper."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from tridesign.cli.output import emit_json, fmt, human, model_config, stdout, table
from tridesign.errors import TridesignError, UsageError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]
InputShapeOpt = Annotated[list[str], typer.Option(
    "--input-shape",
    help="NAME=DIMS, e.g. x=1x3x224x224 (repeatable): fix the symbolic dims of an .onnx input "
         "(`tridesign inspect FILE.onnx` lists them); a given shape takes precedence over --batch.",
)]


def models_cmd(json_out: JsonFlag = False) -> None:
    """List the model registry: project, task, parameters and MACs per config."""
    from tridesign.models import list_models
    from tridesign.models.stats import count_macs, count_params
    from tridesign.progress import step

    with step("counting parameters and MACs on the meta device"):
        rows = [
            {
                "name": spec.name,
                "project": spec.project,
                "task": spec.task,
                "published_params": spec.published_params,
                "params_source": spec.params_source if spec.published_params else None,
                "configs": [{"config": c, "params": count_params(spec, c), "macs": count_macs(spec, c)} for c in spec.configs],
            }
            for spec in list_models()
        ]
    if json_out:
        emit_json({"models": rows})
        return
    table(
        "tridesign models",
        ["model", "project", "config", "params", "MACs", "published params", "from"],
        [
            [r["name"], r["project"], c["config"], human(c["params"]), human(c["macs"]),
             *((human(r["published_params"]), r["params_source"]) if r["published_params"] and c["config"] == "paper" else ("", ""))]
            for r in rows for c in r["configs"]
        ],
    )


def export_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name (see `tridesign models`).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .onnx file.")],
    config: Annotated[str, typer.Option(help="Model configuration: tiny or paper.")] = "tiny",
    batch: Annotated[int, typer.Option(help="Batch size of the verification inputs.")] = 1,
    json_out: JsonFlag = False,
) -> None:
    """Export a registered model to ONNX (opset 17) and verify it against torch through ONNX Runtime."""
    from tridesign.compiler.export import export_model
    from tridesign.progress import step

    with step(f"exporting {model}:{config}"):
        report = export_model(model, config, out, batch=batch)
    if json_out:
        emit_json(report.to_dict())
        return
    table(f"export {model}:{config} -> {out}", ["check", "value"], [
        ["max abs error vs torch", report.max_abs_err],
        ["max rel error vs torch", report.max_rel_err],
        ["tolerance (abs)", report.atol],
        ["passed", report.passed],
    ])


def compile_cmd(
    source: Annotated[str, typer.Argument(help="A registered model name or any .onnx file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Artifact directory to create (replaced if it is an artifact).")],
    backend: Annotated[str, typer.Option(help="Backend: ort or tvm.")] = "ort",
    target: Annotated[str, typer.Option(help="Target name (see `tridesign targets`).")] = "host",
    tune: Annotated[int, typer.Option(help="MetaSchedule tuning trials (tvm); 0 = untuned.")] = 0,
    tuning_db: Annotated[Optional[Path], typer.Option(help="Persistent tuning database directory to reuse.")] = None,
    prune: Annotated[Optional[str], typer.Option(help="Sparsity SPEC (unstructured:0.8, block:0.9:4x4, nm:2:4, pattern:4:0.9, channel:0.5, zograsp:0.9) or a per-layer YAML file.")] = None,
    min_density: Annotated[Optional[float], typer.Option(
        "--min-density",
        help="Per-layer floor under --prune: every layer keeps at least this fraction of its weights, its largest "
             "(default 0.01, or the YAML plan's min_density: global ranking can otherwise empty a whole layer; "
             "0 turns the floor off, and a layer pruned to nothing is then refused).",
    )] = None,
    finetune_steps: Annotated[int, typer.Option(help="First-order recovery steps after --prune (registered models with task data).")] = 0,
    quantize: Annotated[Optional[str], typer.Option(help="int8: static QDQ quantization, per-channel weights.")] = None,
    config: Annotated[Optional[str], typer.Option(help="Model configuration for a registered model (default: tiny, said on stderr).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the example inputs.")] = 1,
    input_shape: InputShapeOpt = [],  # noqa: B006
    eval_data: Annotated[Optional[str], typer.Option(
        "--eval-data",
        help="Score the artifact and the model before --prune/--quantize on this labelled data: an .npz with an "
             "array per input (or x) and labels y, or `heldout` for the digits models' held-out split.",
    )] = None,
    labels: Annotated[Optional[str], typer.Option(help="Labels for --eval-data: FILE.npy, FILE.npz or FILE.npz:KEY (default: y in the data).")] = None,
    metric: Annotated[str, typer.Option(help="Metric of --eval-data: top1, top5, mse or iou.")] = "top1",
    max_accuracy_drop: Annotated[Optional[float], typer.Option(
        "--max-accuracy-drop",
        help="Fail, writing nothing, when --eval-data shows the artifact worse than the uncompressed model by "
             "more than this (in the metric's units: 0.02 = 2 points of top-1).",
    )] = None,
    calibration: Annotated[Optional[str], typer.Option(
        help="Calibrate --quantize int8 on this data instead of random inputs: an .npz with an array per input (or x), "
             "or, for a one-image-input model, a directory of images or a video (see --preprocess).",
    )] = None,
    verify_inputs: Annotated[Optional[str], typer.Option(
        "--verify-inputs",
        help="Also verify the artifact against ONNX Runtime on these inputs (same forms as --calibration); "
             "a mismatch writes nothing.",
    )] = None,
    preprocess: Annotated[Optional[str], typer.Option(
        help="How images/video frames become the input: size=HxW,mean=a,b,c,std=a,b,c,order=rgb|bgr,layout=nchw|nhwc "
             "(pixels scaled to 0..1 first; default: the input's size, mean 0, std 1, rgb, nchw).",
    )] = None,
    json_out: JsonFlag = False,
) -> None:
    """Compile a model into a verified artifact directory with a manifest (optionally pruned and quantized)."""
    from tridesign.cli.evaluate import accuracy_rows
    from tridesign.compiler.evaluate import EvalRequest
    from tridesign.compiler.onnx_io import parse_input_shapes
    from tridesign.compiler.options import CompileOptions, input_shapes_option
    from tridesign.compiler.pipeline import compile_artifact
    from tridesign.compiler.user_data import UserInputs, parse_preprocess
    from tridesign.sparsity_plan import load_plan

    if min_density is not None and not prune:
        raise UsageError("--min-density is the per-layer floor of --prune; give --prune too")
    if eval_data is None and (labels is not None or max_accuracy_drop is not None or metric != "top1"):
        raise UsageError("--labels, --metric and --max-accuracy-drop go with --eval-data; give --eval-data too")
    evaluation = EvalRequest(eval_data, labels, metric, max_accuracy_drop) if eval_data is not None else None
    options = CompileOptions(
        backend=backend, target=target, tune_trials=tune, tuning_db=tuning_db,
        prune=load_plan(prune, min_density) if prune else None,
        finetune_steps=finetune_steps, quantize=quantize, config=model_config(source, config), batch=batch,
        input_shapes=input_shapes_option(parse_input_shapes(input_shape)),
    )
    user = UserInputs(calibration, verify_inputs, parse_preprocess(preprocess) if preprocess else None)
    manifest = compile_artifact(source, options, out, evaluation, user)
    if json_out:
        emit_json(manifest.to_dict())
        return
    v = manifest.verification
    sparsity = getattr(manifest.source, "sparsity", None)
    table(f"compiled {source} -> {out}", ["field", "value"], [
        ["backend", manifest.backend],
        ["target", manifest.target.name],
        ["tuned", manifest.tuned],
        ["compile seconds", manifest.compile_seconds],
        ["max abs error vs ORT", "not run here" if v.max_abs_err is None else v.max_abs_err],
        ["verified", v.passed],
        *([["verified on --verify-inputs", f"{v.user_inputs['samples']} samples, max abs error {v.user_inputs['max_abs_err']:.3g}"]]
          if v.user_inputs else []),
        *(_sparsity_rows(sparsity) if sparsity else []),
        *([["int8 speedup vs fp32 (ORT)", manifest.quantization["speedup"]]] if manifest.quantization else []),
        *(accuracy_rows(manifest.accuracy) if manifest.accuracy else []),
    ])
    for note in manifest.notes:
        stdout.print(f"[yellow]note:[/] {note}")


def _sparsity_rows(sparsity: dict) -> list[list]:
    """The real sparsity and the layer densities at both ends: a total alone hides a layer pruned
    to (almost) nothing. Older manifests lack the extremes."""
    rows: list[list] = [["real sparsity", sparsity["real_sparsity"]]]
    for key, label in (("density_min", "sparsest layer (density)"), ("density_max", "densest layer (density)")):
        if sparsity.get(key):
            rows.append([label, f"{sparsity[key]['layer']} ({sparsity[key]['density']})"])
    if sparsity.get("layers_at_min_density"):
        rows.append([f"layers at --min-density {sparsity['min_density']}", len(sparsity["layers_at_min_density"])])
    return rows


def profile_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory made by `tridesign compile`.")],
    repeat: Annotated[int, typer.Option(help="Timed runs.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.")] = 5,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Also report the slowest layers: time, share, dense MACs (ORT) and GMAC/s.")] = False,
    top: Annotated[int, typer.Option(help="How many of the slowest layers --per-layer lists.")] = 10,
    all_layers: Annotated[bool, typer.Option("--all", help="List every layer with --per-layer.")] = False,
    remote: Annotated[Optional[str], typer.Option(help="HOST:PORT of a board's TVM RPC server: time the module there.")] = None,
    tracker: Annotated[Optional[str], typer.Option(help="HOST:PORT of a TVM RPC tracker (with --key) instead of --remote.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Device key the board registered with the tracker.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Latency (median/p90/p99), throughput, peak RSS, parameters, MACs, size and error of an artifact."""
    if remote or tracker:
        _profile_remote(artifact, remote, tracker, key, repeat, warmup, json_out)
        return
    from tridesign.compiler.profile import profile_artifact

    if (all_layers or top != 10) and not per_layer:
        raise UsageError("--top and --all choose the layers --per-layer lists; give --per-layer too")
    report = profile_artifact(artifact, repeat=repeat, warmup=warmup, per_layer=per_layer, top=None if all_layers else top)
    if json_out:
        emit_json(report)
        return
    lat = report["latency_ms"]
    table(f"profile {artifact} ({report['backend']}, {report['target']}, tuned={report['tuned']})", ["metric", "value"], [
        ["latency median ms", lat["median"]], ["latency p90 ms", lat["p90"]], ["latency p99 ms", lat["p99"]],
        ["throughput /s", report["throughput_per_s"]], ["peak RSS MB", report["peak_rss_mb"]],
        ["parameters", report["parameters"]], ["dense MACs", report["dense_macs"]],
        ["artifact bytes", report["artifact_bytes"]], ["max abs error vs reference", report["max_abs_err"]],
    ])
    if per_layer:
        shown = len(report["layers"])
        title = f"slowest layers ({shown} of {report['layers_timed']}, {report['layers_ms_total']:.3f} ms in all)"
        table(title, ["layer", "op", "ms", "share", "dense MACs", "GMAC/s"],
              [[t["name"], t["op_type"], t["ms"], fmt(t["share"]), human(t["macs"]) if t["macs"] else "-",
                fmt(t["gmac_per_s"]) if t["gmac_per_s"] else "-"] for t in report["layers"]])
        if "layers_note" in report:
            stdout.print(f"[yellow]note:[/] {report['layers_note']}", highlight=False)


def _profile_remote(
    artifact: Path, remote: str | None, tracker: str | None, key: str | None, repeat: int, warmup: int, json_out: bool
) -> None:
    """Time a TVM artifact on a board through TVM RPC (directly, or through a tracker by key)."""
    from tridesign.cli.tune import parse_host_port
    from tridesign.compiler.remote import profile_remote

    if remote and tracker:
        raise UsageError("give either --remote HOST:PORT or --tracker HOST:PORT --key KEY, not both")
    if tracker and not key:
        raise UsageError("--tracker needs --key (the device key the board registered with)")
    host, port = parse_host_port(remote, "--remote") if remote else (None, None)
    report = profile_remote(
        artifact, host=host, port=port, tracker=parse_host_port(tracker, "--tracker") if tracker else None,
        key=key, repeat=repeat, warmup=warmup,
    )
    if json_out:
        emit_json(report)
        return
    lat = report["latency_ms"]
    table(f"profile {artifact} on {report['remote']}", ["metric", "value"], [
        ["device", report["device"]], ["latency median ms", lat["median"]], ["latency p90 ms", lat["p90"]],
        ["latency p99 ms", lat["p99"]], ["module bytes", report["module_bytes"]],
        ["max abs error vs reference", report["max_abs_err"]],
    ])


def run_cmd(
    artifact: Annotated[Path, typer.Argument(help="A bundle (.tar.gz or folder, from `tridesign deploy`) or an artifact directory.")],
    input: Annotated[Optional[Path], typer.Option("--input", help=".npz with one array per model input name (a bundle defaults to its reference inputs).")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output .npz, one array per output name.")] = None,
    engine: Annotated[str, typer.Option(help="Bundles: auto, tensorrt, tvm or onnxruntime.")] = "auto",
    repeat: Annotated[int, typer.Option(help="Bundles: timed runs.")] = 50,
    warmup: Annotated[int, typer.Option(help="Bundles: untimed warm-up runs.")] = 5,
    json_out: JsonFlag = False,
) -> None:
    """Run a bundle (check, run, compare with its reference, time) or an artifact on your inputs."""
    from tridesign.artifact import load_npz
    from tridesign.atomic import atomic_file
    from tridesign.deploy.bundle import is_bundle

    inputs = load_npz(input) if input is not None else None
    if is_bundle(artifact):
        from tridesign.cli.deploy import print_bundle_report
        from tridesign.deploy import bundle

        report, outputs = bundle.run(artifact, inputs, engine, repeat, warmup)
        if json_out:
            emit_json(report)
        else:
            print_bundle_report(report)
        if out is not None:
            with atomic_file(out) as handle:
                np.savez(handle, **outputs)
        if not report.get("passed", True):
            raise TridesignError("the bundle's outputs differ from its reference outputs beyond the stated tolerance")
        return
    from tridesign.compiler.run import run_artifact

    if inputs is None or out is None:
        raise UsageError("running an artifact needs --input FILE.npz and -o OUT.npz")
    outputs = run_artifact(artifact, inputs)
    with atomic_file(out) as handle:
        np.savez(handle, **outputs)
    stdout.print(f"wrote {', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())} to {out}")


def demo_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="Report directory.")] = Path("reports/demo"),
    video: Annotated[bool, typer.Option(help="Also track a synthetic HD video, dense and tri-design (the first run trains the detector).")] = True,
    json_out: JsonFlag = False,
) -> None:
    """The built-in default job: export -> compile (ORT, TVM) -> profile -> simulate -> track a video, with a JSON + HTML report."""
    from tridesign.workflows.demo import run_demo

    summary = run_demo(out, video=video)
    if json_out:
        emit_json(summary)
        return
    table("tridesign demo", ["model", "backend", "median ms", "params", "MACs", "max abs err"], [
        [r["model"], r["backend"], r["latency_ms"], human(r["parameters"]), human(r["dense_macs"]), r["max_abs_err"]]
        for r in summary["rows"]
    ])
    sim = summary["simulation"]
    stdout.print(
        f"simulated {sim['model']} on {sim['arch']}: {sim['latency_ms']:.3f} ms/frame, {sim['fps']:.0f} FPS, "
        f"{sim['energy_per_frame_j']:.3g} J/frame"
    )
    if summary["tracking"]:
        table("tri-design on a synthetic HD video", ["setting", "frames (kept)", "MOTA", "IDF1", "MACs computed", "FPS here", "simulated eff. FPS", "J/frame"], [
            [r["setting"], f"{r['frames']} ({r['kept_frames']})", r["MOTA"], r["IDF1"], human(r["macs_computed"]), r["fps"],
             round(r["sim_effective_fps"]), r["sim_j_per_frame"]]
            for r in summary["tracking"]
        ])
    stdout.print(f"report: {Path(out) / 'index.html'}")


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("export")(export_cmd)
    app.command("compile")(compile_cmd)
    app.command("profile")(profile_cmd)
    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)


