"""This working tree against an earlier commit, in one run: compile the same ONNX files with both,
then time the artifacts in alternating rounds (baseline, ours, baseline, ours, ...).

For refactors that must not change what is built or how fast it runs. Each tree compiles with its
own code (`tridesign.compiler.pipeline.compile_artifact`, ORT and untuned TVM) and times with its
own code (`tridesign.compiler.profile.profile_artifact`: median wall time of --repeat calls after
--warmup), each round in a fresh process of that tree, so a slow phase of the shared machine falls
on both trees alike; the result is the median of the round medians and ours / baseline.

    .venv/bin/python benchmarks/ab_trees.py --baseline 4b86813 --rounds 7 --out benchmarks/results/ab_trees.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("ort", "tvm")

COMPILE = """
import json, sys, time
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
onnx_path, backend, out = sys.argv[1:4]
start = time.perf_counter()
compile_artifact(onnx_path, CompileOptions(backend=backend), out)
print(json.dumps({"compile_s": time.perf_counter() - start}))
"""

PROFILE = """
import json, sys
from tridesign.compiler.profile import profile_artifact
repeat, warmup, *artifacts = sys.argv[1:]
print(json.dumps({a: profile_artifact(a, repeat=int(repeat), warmup=int(warmup))["latency_ms"]["median"] for a in artifacts}))
"""


def workloads(directory: Path) -> dict[str, Path]:
    """The workloads of compile_latency.py, exported once so both trees compile identical files."""
    import torch

    from tridesign.compiler.export import torch_to_onnx
    from tridesign.models.deepzero import build_resnet20
    from tridesign.models.resnet import build_resnet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    specs = {
        "resnet20 b1": (build_resnet20("paper"), (1, 3, 32, 32)),
        "resnet20 b32": (build_resnet20("paper"), (32, 3, 32, 32)),
        "resnet18 224": (build_resnet(18), (1, 3, 224, 224)),
    }
    paths = {}
    for label, (module, shape) in specs.items():
        path = directory / f"{label.replace(' ', '_')}.onnx"
        inputs = {"input": rng.standard_normal(shape, dtype=np.float32)}
        path.write_bytes(torch_to_onnx(module, inputs, ("logits",)).SerializeToString())
        paths[label] = path
    return paths


def in_tree(tree: Path, code: str, *args: str) -> dict:
    """Run `code` with `tree`'s tridesign first on the path; its last stdout line is JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ab_trees.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(baseline), args.baseline], check=True)
        try:
            rows = measure(args, scratch, {"baseline": baseline, "ours": ROOT})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
    result = {
        "benchmark": "ab_trees",
        "baseline": subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.baseline], capture_output=True, text=True).stdout.strip(),
        "ours": "working tree",
        "machine": {"cpus": os.cpu_count(), "note": "shared, noisy 2-core machine: compare ratios, not absolute ms"},
        "rounds": args.rounds, "repeat": args.repeat, "warmup": args.warmup,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def measure(args: argparse.Namespace, scratch: Path, trees: dict[str, Path]) -> list[dict]:
    onnx_files = workloads(scratch)
    artifacts: dict[str, dict[tuple[str, str], str]] = {name: {} for name in trees}
    compile_s: dict[tuple[str, str, str], float] = {}
    for label, path in onnx_files.items():
        for backend in BACKENDS:
            for name, tree in trees.items():
                out = scratch / f"{name}-{path.stem}-{backend}"
                compile_s[name, label, backend] = in_tree(tree, COMPILE, str(path), backend, str(out))["compile_s"]
                artifacts[name][label, backend] = str(out)
                print(f"compiled {label} with {backend} in {name}: {compile_s[name, label, backend]:.1f} s", file=sys.stderr)
    samples: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            keys = list(artifacts[name])
            medians = in_tree(tree, PROFILE, str(args.repeat), str(args.warmup), *(artifacts[name][k] for k in keys))
            for key in keys:
                samples.setdefault((name, *key), []).append(medians[artifacts[name][key]])
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    rows = []
    for label in onnx_files:
        for backend in BACKENDS:
            base = float(np.median(samples["baseline", label, backend]))
            ours = float(np.median(samples["ours", label, backend]))
            rows.append({
                "workload": label, "backend": backend, "baseline_ms": base, "ours_ms": ours, "ratio": ours / base,
                "compile_s": {name: round(compile_s[name, label, backend], 1) for name in trees},
            })
            print(f"{label:14s} {backend:4s} baseline {base:8.3f} ms  ours {ours:8.3f} ms  x{ours / base:5.2f}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
