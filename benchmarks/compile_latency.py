"""Latency of one model through every engine, measured side by side in one run.

ResNet-20 (CIFAR, batch 1 and 32) and a ResNet-18-shaped 224x224 network: torch eager, ONNX Runtime,
TVM untuned and TVM tuned with a stated MetaSchedule trial budget. Every engine is timed the same way
(wall time of one call on the same inputs, after warm-up; median of --repeat runs) in --rounds
rounds that each time every engine once, and reported as the median of its round medians and a
ratio to ONNX Runtime: on a shared machine a slow phase then costs every engine alike, where timed
one after the other it fell on whichever engine ran in it. Writes JSON to --out.

    .venv/bin/python benchmarks/compile_latency.py --trials 64 --out benchmarks/results/compile_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tridesign.compiler.export import torch_to_onnx
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.timing import time_session
from tridesign.compiler.backends import get_backend


class TorchSession:
    """torch eager behind the Session interface, so it is timed exactly like the backends."""

    def __init__(self, module):
        import torch

        self.module, self.torch = module.eval(), torch

    def run(self, inputs):
        with self.torch.no_grad():
            return self.module(*(self.torch.from_numpy(v) for v in inputs.values()))


def cases():
    """(label, torch module, inputs) for each benchmarked workload."""
    import torch

    from tridesign.models.deepzero import build_resnet20
    from tridesign.models.resnet import build_resnet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    r20 = build_resnet20("paper").eval()
    r18 = build_resnet(18).eval()
    yield "resnet20 b1", r20, {"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)}
    yield "resnet20 b32", r20, {"input": rng.standard_normal((32, 3, 32, 32), dtype=np.float32)}
    yield "resnet18-224 b1", r18, {"input": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}


def measure(args) -> list[dict]:
    rows = []
    for label, module, inputs in cases():
        print(f"== {label}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "model.onnx"
            src.write_bytes(torch_to_onnx(module, inputs, ("logits",)).SerializeToString())
            sessions = {"torch eager": TorchSession(module)}
            compile_s = {}
            engines = [("onnxruntime", "ort", 0), ("tvm untuned", "tvm", 0)]
            if args.trials:
                engines.append((f"tvm tuned ({args.trials} trials)", "tvm", args.trials))
            for name, backend, trials in engines:
                out = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
                start = time.perf_counter()
                manifest = compile_artifact(str(src), CompileOptions(backend=backend, tune_trials=trials, seed=0), out)
                compile_s[name] = time.perf_counter() - start
                if trials and not manifest.tuned:
                    print(f"   note: {name} applied no tuned schedule: {manifest.notes}", file=sys.stderr)
                sessions[name] = get_backend(backend).load(out)
            rounds: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, session in sessions.items():
                    rounds[name].append(float(np.median(time_session(session, inputs, args.repeat, args.warmup))))
            medians = {name: float(np.median(values)) for name, values in rounds.items()}
            base = medians["onnxruntime"]
            for name, ms in medians.items():
                rows.append({
                    "workload": label, "engine": name, "median_ms": ms, "ratio_to_ort": ms / base,
                    "compile_s": compile_s.get(name),
                })
                print(f"   {name:28s} {ms:9.3f} ms  x{ms / base:6.2f} vs ORT", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64, help="MetaSchedule trials for the tuned TVM row (0 skips it)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="rounds timing every engine once (median of their medians)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compile_latency.json"))
    args = parser.parse_args()
    rows = measure(args)
    result = {
        "benchmark": "compile_latency",
        "machine": {"cpus": os.cpu_count(), "note": "shared, noisy 2-core machine: compare ratios, not absolute ms"},
        "repeat": args.repeat, "warmup": args.warmup, "rounds": args.rounds, "trials": args.trials,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
