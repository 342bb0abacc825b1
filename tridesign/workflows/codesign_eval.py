"""One co-design evaluation: a (data, model) point measured for real, then every circuit point simulated.

The costly half is measured, never assumed: the model point is pruned, recovered, quantized and
compiled (`compiler.artifact_cache`, so each is built once and shared by every data and circuit
point, and by later searches); for `video` every held-apart sequence is tracked through that
compiled artifact with the point's frame and patch dropping (`workflows.track`), which measures
MOTA/IDF1 with TrackEval and the data sparsity the policies actually produced; for
`classification` the compiled artifact scores top-1 on the held-out split. The cheap half then
runs the simulator once per circuit point on the ONNX graph that was deployed, carrying the
measured data sparsity, so latency, energy per input frame and area describe this very model on
this very data.

`evaluate` is a top-level function of picklable arguments: the search runs it in-process, in a
local process pool or as a Ray task.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from tridesign.annotations import DataSparsity, write_data_sparsity
from tridesign.artifact import MODEL_FILE, TRACK_MODEL, TRACK_SUMMARY, load_manifest
from tridesign.atomic import write_bytes_atomic
from tridesign.errors import UsageError
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import SystemSpec
from tridesign.compiler.options import CompileOptions
from tridesign.hwsim.workload import load_workload
from tridesign.sparsity_plan import load_plan
from tridesign.workflows.codesign_space import DENSE, NO_DROP, circuit_system

TASKS = ("video", "classification")
DATA_KNOBS = ("frame_drop", "patch_drop", "patch_px")
MODEL_KNOBS = ("prune", "int8", "recovery_steps")


@dataclass(frozen=True)
class Sequence:
    """One scored video: MOT layout as `tridesign videos synth` writes it (DIR/<seq>/seqinfo.ini, gt/gt.txt)."""

    name: str
    video: Path
    gt: Path


@dataclass(frozen=True)
class Labelled:
    """Classification data: an .npz with `x` and `y`, or None for the model's own held-out split."""

    path: Path | None


@dataclass(frozen=True)
class Context:
    """What every evaluation of one search shares."""

    task: str
    source: str
    config: str
    backend: str
    system: SystemSpec
    circuits: tuple[dict[str, Any], ...]
    runs: Path  # OUT_DIR/runs: one folder per (data, model) point
    sequences: tuple[Sequence, ...] = ()
    labelled: Labelled = Labelled(None)


def find_sequences(data: Path) -> tuple[Sequence, ...]:
    """The sequences under DATA (or DATA itself), each with its video and gt.txt; refused if none."""
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"--data {data}: {'not a directory' if data.exists() else 'no such directory'} "
                         "(a video task scores on MOT sequences: make them with `tridesign videos synth -o DIR`)")
    infos = [data / "seqinfo.ini"] if (data / "seqinfo.ini").is_file() else sorted(data.glob("*/seqinfo.ini"))
    sequences = []
    for info in infos:
        parser = configparser.ConfigParser()
        try:
            parser.read(info)
            section = parser["Sequence"]
            video = info.parent / section["video"]
        except (configparser.Error, KeyError):
            raise UsageError(f"{info}: not a seqinfo.ini with a [Sequence] video= entry") from None
        gt = info.parent / "gt" / "gt.txt"
        for path, what in ((video, "video"), (gt, "ground truth")):
            if not path.is_file():
                raise UsageError(f"{info.parent}: its {what} {path.name} is missing")
        sequences.append(Sequence(info.parent.name, video, gt))
    if not sequences:
        raise UsageError(f"--data {data}: no MOT sequence (<seq>/seqinfo.ini with gt/gt.txt) in it")
    return tuple(sequences)


def normalize(params: dict[str, Any], task: str) -> dict[str, Any]:
    """The point as evaluated: a dense model has no recovery steps, a task only its own knobs."""
    point = {k: params[k] for k in (DATA_KNOBS if task == "video" else ()) + MODEL_KNOBS}
    if point["prune"] == DENSE:
        point["recovery_steps"] = 0
    return point


def point_key(point: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:12]


def compile_options(ctx: Context, point: dict[str, Any]) -> CompileOptions:
    """The compiler's options of a model point (the data knobs do not touch the model)."""

    return CompileOptions(backend=ctx.backend, config=ctx.config,
                          prune=None if point["prune"] == DENSE else load_plan(point["prune"]),
                          finetune_steps=point["recovery_steps"], quantize="int8" if point["int8"] else None)


def evaluate(ctx: Context, point: dict[str, Any]) -> dict[str, Any]:
    """Measure one (data, model) point and simulate it on every circuit point; JSON-ready."""
    started = time.perf_counter()
    key = point_key(point)
    if ctx.task == "video":
        measured, onnx_path = _track(ctx, point, ctx.runs / key)
    else:
        measured, onnx_path = _classify(ctx, point)
    workload = load_workload(onnx_path)
    circuits, notes = [], set()
    for circuit in ctx.circuits:
        result = simulate(workload, circuit_system(ctx.system, circuit))
        notes.update(result.notes)
        t = result.totals
        circuits.append({
            "circuit": circuit, "dataflow": result.dataflow,
            "circuit_changed": circuit_system(ctx.system, circuit) != ctx.system,
            "latency_ms": t["latency_ms"], "frame_interval_ms": t["frame_interval_ms"],
            "effective_fps": t["effective_fps"], "area_mm2": t["area_mm2"],
            "energy_per_frame": t["energy_per_input_frame_j"] if t["energy_per_input_frame_j"] is not None else t["energy_per_input_frame"],
            "energy_unit": "J" if t["energy_per_input_frame_j"] is not None else result.energy_unit,
        })
    return {"key": key, "point": point, **measured, "simulated_onnx": str(onnx_path), "circuits": circuits,
            "notes": sorted(notes), "seconds": round(time.perf_counter() - started, 3)}


def _track(ctx: Context, point: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], Path]:
    """Track every sequence; combine the metrics by their counts and the data sparsity by frames."""
    from tridesign.workflows.track import TrackOptions, track

    options = compile_options(ctx, point)
    track_options = TrackOptions(
        model=ctx.source, config=ctx.config, backend=ctx.backend,
        frame_drop=None if point["frame_drop"] == NO_DROP else point["frame_drop"],
        patch_drop=point["patch_drop"], patch_px=point["patch_px"], prune=options.prune,
        finetune_steps=options.finetune_steps, quantize=options.quantize, video=False,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for seq in ctx.sequences:
        out = run_dir / seq.name
        if (out / TRACK_SUMMARY).is_file():  # tracked before an interrupt: the run is complete
            summaries.append(json.loads((out / TRACK_SUMMARY).read_text()))
        else:
            summaries.append(track(seq.video, out, replace(track_options, gt=seq.gt)))
    metrics = combine_metrics([s["metrics"] for s in summaries])
    sparsity = combine_sparsity([DataSparsity.model_validate(s["data_sparsity"]) for s in summaries],
                                [s["frames"] for s in summaries], [s["kept_frames"] for s in summaries])
    model = onnx.load(str(run_dir / ctx.sequences[0].name / TRACK_MODEL))
    write_data_sparsity(model, sparsity)
    merged = run_dir / TRACK_MODEL
    write_bytes_atomic(merged, model.SerializeToString())
    frames = sum(s["frames"] for s in summaries)
    pipeline_s = sum(sum(v for k, v in s["seconds"].items() if k != "render") for s in summaries)
    detector_s = sum(s["seconds"]["detector"] for s in summaries)
    kept = sum(s["kept_frames"] for s in summaries)
    macs = {k: sum(s["macs"][k] for s in summaries) for k in ("dense_total", "active_total", "computed_total")}
    measured = {
        "accuracy": metrics["MOTA"], "metrics": metrics,
        "measured": {
            "frames": frames, "kept_frame_fraction": sparsity.frame_keep_fraction,
            "active_patch_fraction": sparsity.active_tile_fraction,
            "macs_active_vs_dense": macs["active_total"] / macs["dense_total"] if macs["dense_total"] else None,
            "cpu_pipeline_fps": frames / pipeline_s if pipeline_s else None,
            "cpu_detector_ms": 1000 * detector_s / kept if kept else None,
            "artifact": summaries[0]["detector"]["artifact"],
        },
    }
    return measured, merged


def combine_metrics(per_sequence: list[dict[str, Any]]) -> dict[str, Any]:
    """MOTA and IDF1 over all sequences from their summed counts (as TrackEval combines them); HOTA
    weighted by ground-truth boxes."""
    total = {k: sum(m[k] for m in per_sequence) for k in ("FN", "FP", "IDSW", "num_gt", "IDTP", "IDFP", "IDFN")}
    gt = max(total["num_gt"], 1)
    id_denominator = 2 * total["IDTP"] + total["IDFP"] + total["IDFN"]
    return {
        "MOTA": 1 - (total["FN"] + total["FP"] + total["IDSW"]) / gt,
        "IDF1": 2 * total["IDTP"] / id_denominator if id_denominator else 0.0,
        "HOTA": sum(m["HOTA"] * m["num_gt"] for m in per_sequence) / gt,
        **{k: total[k] for k in ("FN", "FP", "IDSW", "num_gt")}, "sequences": len(per_sequence),
    }


def combine_sparsity(records: list[DataSparsity], frames: list[int], kept: list[int]) -> DataSparsity:
    """One record for all sequences: kept frames over all frames, active fractions over kept frames."""
    weight = max(sum(kept), 1)
    layers: dict[str, float] = {}
    for record, k in zip(records, kept):
        for node, value in record.layer_active_fraction.items():
            layers[node] = layers.get(node, 0.0) + value * k / weight
    return DataSparsity(
        tile_px=records[0].tile_px,
        active_tile_fraction=sum(r.active_tile_fraction * k for r, k in zip(records, kept)) / weight,
        frame_keep_fraction=sum(kept) / max(sum(frames), 1),
        layer_active_fraction=layers,
        source=f"measured by tridesign codesign over {len(records)} sequence(s): "
               + "; ".join(r.source.removeprefix("measured by tridesign track ") for r in records),
    )


def _classify(ctx: Context, point: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Top-1 of the compiled artifact on the labelled data (the held-out split unless --data is
    given), scored as `tridesign evaluate` scores it, and the artifact's model for the simulator."""
    from tridesign.compiler.artifact_cache import cached_artifact
    from tridesign.compiler.evaluate import artifact_runner, load_eval_data, score

    artifact = cached_artifact(ctx.source, compile_options(ctx, point))
    manifest = load_manifest(artifact)
    data = load_eval_data(ctx.labelled.path, None, manifest.inputs, ctx.source)
    top1 = score(artifact_runner(artifact, manifest), manifest.inputs, data, "top1")
    return {"accuracy": top1.value, "metrics": {"top1": top1.value, "samples": top1.samples},
            "measured": {"cpu_ms_per_sample": 1000 * top1.seconds / top1.samples, "artifact": str(artifact)}}, artifact / MODEL_FILE
