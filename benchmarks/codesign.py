"""Joint data x model x circuit search vs each axis alone, at the same evaluation budget.

Four `tridesign codesign` searches of qdtrack_center on the same held-apart HD videos (`videos
synth --seed 7`; the detector trains on seeds >= 1000) and the `tridesign-alveo` arch:

- joint: the built-in video space (data: frame drop x patch drop; model: pattern pruning level x
  int8; circuit: array rows x cols x DRAM bandwidth x dataflow), NSGA-II for `--budget` measured
  (data, model) points, every circuit point simulated for each;
- data only / model only / circuit only: that axis's values from the same space, the other two at
  the paper's settings (40 % frame drop, 20 % of 60-px patches, pattern:4:0.9 with recovery, fp,
  the arch as given); the same budget (each single-axis space is smaller, so it is searched whole).

Each front is scored by its hypervolume over (MOTA, latency, energy per input frame, area), the
last three divided by the dense baseline's (dense model, every frame and patch, the arch as given),
with the reference point MOTA = dense - 0.10 and 1.1x dense latency, energy and area; also over
(MOTA, energy) alone. The goal: the joint front's hypervolume beats every single-axis front's, and
holds a point within 2 MOTA points of dense at >= 5x lower simulated energy per frame.

    .venv/bin/python benchmarks/codesign.py [--budget 24] [--frames 90] [--videos 2] [--work out/codesign_bench]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from tridesign.atomic import write_text_atomic
from tridesign.data.video import SynthConfig, synthesize
from tridesign.hwsim.pareto import hypervolume, pareto_front
from tridesign.workflows.codesign import MAXIMIZE, MINIMIZE, CodesignJob, run_codesign
from tridesign.workflows.codesign_space import SPACES

ARCH = "tridesign-alveo"
EVAL_SEED = 7
PAPER = {"data": {"frame_drop": ["0.4"], "patch_drop": [0.2], "patch_px": [60]},
         "model": {"prune": ["pattern:4:0.9"], "int8": [False], "recovery_steps": [300]},
         "circuit": {}}
ACCURACY_MARGIN = 0.10
GOAL_MOTA_POINTS = 0.02
GOAL_ENERGY = 5.0


def spaces() -> dict[str, dict]:
    joint = yaml.safe_load((SPACES / "video.yaml").read_text())
    single = {axis: {"version": 1, **PAPER, axis: joint[axis]} for axis in ("data", "model", "circuit")}
    return {"joint": joint, **{f"{axis} only": space for axis, space in single.items()}}


def normalized(rows: list[dict], baseline: dict) -> list[dict]:
    return [{"accuracy": r["accuracy"], **{k: r[k] / baseline[k] for k in MINIMIZE}} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("out/codesign_bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/codesign.json"))
    args = parser.parse_args()
    data = args.work / "videos"
    args.work.mkdir(parents=True, exist_ok=True)
    if not data.is_dir():
        synthesize(SynthConfig(seed=EVAL_SEED, frames=args.frames, videos=args.videos, width=1280, height=720, objects=8, noise=2.0), data)
    results = {}
    for name, space in spaces().items():
        space_file = args.work / f"{name.replace(' ', '_')}.yaml"
        space_file.write_text(yaml.safe_dump(space))
        started = time.perf_counter()
        job = CodesignJob(source="qdtrack_center", task="video", arch=ARCH, data=data, space=space_file,
                          budget=args.budget, seed=0)
        summary = run_codesign(job, args.work / name.replace(" ", "_"), on_progress=lambda d, t, label, n=name: print(
            f"  {n}: {d}/{t} {label}", flush=True))
        rows = [json.loads(line) for line in (args.work / name.replace(" ", "_") / "points.jsonl").read_text().splitlines()]
        results[name] = {"summary": summary, "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
        print(f"{name}: {summary['measured_points']} measured, {summary['points']} points, "
              f"{summary['pareto']} on the front ({results[name]['seconds']} s)", flush=True)
    baseline = results["joint"]["summary"]["baseline"]
    reference = {"accuracy": baseline["accuracy"] - ACCURACY_MARGIN, **{k: 1.1 for k in MINIMIZE}}
    table = {}
    for name, result in results.items():
        rows = normalized(result["rows"], baseline)
        front = pareto_front(rows, MINIMIZE, MAXIMIZE)
        near = [r for r in result["rows"] if r["accuracy"] >= baseline["accuracy"] - GOAL_MOTA_POINTS]
        table[name] = {
            "measured_points": result["summary"]["measured_points"], "points": len(rows), "pareto": len(front),
            "hypervolume": hypervolume([rows[i] for i in front], reference, MINIMIZE, MAXIMIZE),
            "hypervolume_mota_energy": hypervolume(rows, reference, ("energy_per_frame",), MAXIMIZE),
            "best_energy_vs_dense_within_2_mota": max((r["energy_vs_dense"] for r in near), default=None),
            "best_mota": max(r["accuracy"] for r in result["rows"]),
            "chosen": result["summary"]["chosen"], "seconds": result["seconds"],
        }
    joint = table["joint"]
    goal = {
        "joint_dominates_each_axis": all(joint["hypervolume"] > t["hypervolume"] for n, t in table.items() if n != "joint"),
        "joint_point_within_2_mota_at_5x_energy": (joint["best_energy_vs_dense_within_2_mota"] or 0) >= GOAL_ENERGY,
    }
    payload = {"benchmark": "codesign", "arch": ARCH, "budget": args.budget, "videos": args.videos, "frames": args.frames,
               "size": "1280x720", "eval_seed": EVAL_SEED, "baseline": baseline, "reference_point": reference,
               "searches": table, "goal": goal}
    write_text_atomic(args.out, json.dumps(payload, indent=2) + "\n")
    print(f"dense: MOTA {baseline['accuracy']:.3f}, {baseline['energy_per_frame']:.3g} {baseline['energy_unit']}/frame, "
          f"{baseline['latency_ms']:.4g} ms")
    print(f"{'search':<14}{'measured':>9}{'points':>8}{'front':>7}{'HV':>9}{'HV(MOTA,E)':>12}{'E x within 2pt':>16}{'best MOTA':>11}")
    for name, t in table.items():
        energy = t["best_energy_vs_dense_within_2_mota"]
        print(f"{name:<14}{t['measured_points']:>9}{t['points']:>8}{t['pareto']:>7}{t['hypervolume']:>9.4f}"
              f"{t['hypervolume_mota_energy']:>12.4f}{(f'{energy:.2f}x' if energy else '-'):>16}{t['best_mota']:>11.3f}")
    print("goal:", goal)


if __name__ == "__main__":
    main()
