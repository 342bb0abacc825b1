"""Tri-design on video: dense vs frame drop vs patch drop vs pruning vs all three, measured end to end.

One held-apart synthetic HD video (`videos synth`, seed 7: the detector trains on seeds >= 1000)
goes through `tridesign track` with each setting; every setting runs `--rounds` times, the settings
interleaved round by round, and the median pipeline FPS is kept (decode + sparsity decisions +
detector + tracking; drawing the annotated video is not counted). Accuracy (MOTA, IDF1, HOTA) comes
from TrackEval on the video's gt.txt; MACs from the run's own count. Each run's `detector.onnx`
(with the data sparsity measured on the video) is simulated on `tridesign-alveo`; the same measured
fractions are also applied to the paper-size network (`qdtrack_detector:paper`, ResNet-50 + FPN at
720x1296) to set them beside the paper's numbers.

    .venv/bin/python benchmarks/video_tridesign.py [--frames 150] [--rounds 2] [--out benchmarks/results/video_tridesign.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tridesign.atomic import write_text_atomic
from tridesign.compiler.reference_nets import calibration_workload
from tridesign.data.video import SynthConfig, synthesize
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting, apply_sparsity, parse_what_if
from tridesign.hwsim.spec import load_spec
from tridesign.hwsim.workload import load_workload
from tridesign.sparsity_plan import load_plan
from tridesign.workflows.track import TrackOptions, track

ARCH = "tridesign-alveo"
PRUNE = "pattern:4:0.9"
RECOVERY_STEPS = 300
LAYER_PLAN = Path(__file__).parent / "plans" / "qdtrack_center_per_layer_0.9.yaml"  # why: see the file
LAYER_RECOVERY_STEPS = 2000
EVAL_SEED = 7
# The paper's QDTrack on FPGA (Tri-design, ASP-DAC'23 results table): MOTA, frame time ms, effective FPS, J/frame.
PAPER = {"dense": {"MOTA": 0.637, "frame_ms": 554.7, "effective_fps": 1.8, "j_per_frame": 28.2},
         "tri-design": {"MOTA": 0.617, "frame_ms": 44.4, "effective_fps": 37.6, "j_per_frame": 1.35}}


def settings(plan_file: Path) -> dict[str, dict]:
    pruned = {"prune": load_plan(PRUNE), "finetune_steps": RECOVERY_STEPS}
    per_layer = {"prune": load_plan(str(plan_file)), "finetune_steps": LAYER_RECOVERY_STEPS}
    return {
        "dense (ort)": {"backend": "ort"},
        "dense (tvm)": {"backend": "tvm"},
        "frame drop 0.4": {"backend": "tvm", "frame_drop": "0.4"},
        "patch drop 0.2": {"backend": "tvm", "patch_drop": 0.2},
        f"pruning {PRUNE}": {"backend": "tvm", **pruned},
        "all three": {"backend": "tvm", "frame_drop": "0.4", "patch_drop": 0.2, **pruned},
        "all three, per-layer 0.9": {"backend": "tvm", "frame_drop": "0.4", "patch_drop": 0.2, **per_layer},
    }


def simulated(detector_onnx: Path, system) -> dict:
    t = simulate(load_workload(detector_onnx), system).totals
    return {"frame_interval_ms": t["frame_interval_ms"], "effective_fps": t["effective_fps"],
            "j_per_input_frame": t["energy_per_input_frame_j"]}


def paper_scale(summary: dict, pruned: bool, workload, system) -> dict:
    """The measured fractions on the paper-size detector (global active fraction: the layers differ)."""
    ds = summary["data_sparsity"]
    setting = SparsitySetting(parse_what_if(PRUNE if pruned else "dense"), ds["active_tile_fraction"], ds["frame_keep_fraction"])
    t = simulate(apply_sparsity(workload, setting, seed=0), system).totals
    return {"frame_interval_ms": t["frame_interval_ms"], "effective_fps": t["effective_fps"],
            "j_per_input_frame": t["energy_per_input_frame_j"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/video_tridesign.json"))
    args = parser.parse_args()

    system = load_spec(ARCH)
    paper_workload = calibration_workload(system.calibration.workload)
    with tempfile.TemporaryDirectory(prefix="video-tridesign-") as scratch:
        root = Path(scratch)
        cases = settings(LAYER_PLAN)
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        cfg = SynthConfig(seed=EVAL_SEED, frames=args.frames, width=1280, height=720, objects=args.objects, noise=2.0)
        synthesize(cfg, root / "video")
        seq = root / "video" / "synth-0001"
        video, gt = next(seq.glob("synth-0001.*")), seq / "gt" / "gt.txt"
        for name, kw in cases.items():  # builds (and caches) every detector before anything is timed
            track(video, root / "warm", TrackOptions(gt=gt, video=False, **kw))
        for r in range(args.rounds):
            for i, (name, kw) in enumerate(cases.items()):
                out = root / f"{i}-{r}"
                summary = track(video, out, TrackOptions(gt=gt, video=False, **kw))
                if r == 0:
                    summary["simulated"] = simulated(out / "detector.onnx", system)
                    summary["paper_scale"] = paper_scale(summary, "prune" in kw, paper_workload, system)
                    summary["recovery"] = summary["detector"]["source"].get("recovery")
                runs[name].append(summary)
    rows = []
    dense = None
    for name, summaries in runs.items():
        first = summaries[0]
        fps = statistics.median(s["fps"]["pipeline"] for s in summaries)
        det_ms = statistics.median(s["fps"]["detector_ms_per_kept_frame"] for s in summaries)
        row = {"setting": name, "options": first["options"], "metrics": {k: first["metrics"][k] for k in ("MOTA", "IDF1", "HOTA", "IDSW")},
               "kept_frame_fraction": first["kept_frame_fraction"], "mean_active_patch_fraction": first["mean_active_patch_fraction"],
               "macs_computed": first["macs"]["computed_total"], "macs_active": first["macs"]["active_total"],
               "macs_dense": first["macs"]["dense_total"], "pipeline_fps_median": fps, "pipeline_fps_runs": [s["fps"]["pipeline"] for s in summaries],
               "detector_ms_per_kept_frame": det_ms, "simulated": first["simulated"], "paper_scale": first["paper_scale"],
               "recovery": first["recovery"], "seconds_per_stage": first["seconds"]}
        dense = dense or row
        rows.append(row)
    for row in rows:
        row["vs_dense_ort"] = {"macs_computed": dense["macs_computed"] / row["macs_computed"],
                               "fps": row["pipeline_fps_median"] / dense["pipeline_fps_median"],
                               "mota_points": 100 * (row["metrics"]["MOTA"] - dense["metrics"]["MOTA"])}
    result = {"per_layer_plan": LAYER_PLAN.read_text(), "video": {"seed": EVAL_SEED, "frames": args.frames, "size": "1280x720", "objects": args.objects},
              "rounds": args.rounds, "arch": ARCH, "rows": rows, "paper": PAPER,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"{'setting':26} {'MOTA':>6} {'IDF1':>6} {'MACs computed':>14} {'x fewer':>8} {'FPS':>7} {'x faster':>8} "
          f"{'sim ms':>8} {'sim J':>7} {'paper-size ms':>13} {'J':>6}")
    for row in rows:
        m, v, s, p = row["metrics"], row["vs_dense_ort"], row["simulated"], row["paper_scale"]
        print(f"{row['setting']:26} {m['MOTA']:6.3f} {m['IDF1']:6.3f} {row['macs_computed'] / 1e9:12.2f} G {v['macs_computed']:8.2f} "
              f"{row['pipeline_fps_median']:7.1f} {v['fps']:8.2f} {s['frame_interval_ms']:8.2f} {s['j_per_input_frame']:7.4f} "
              f"{p['frame_interval_ms']:13.1f} {p['j_per_input_frame']:6.2f}")
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
