"""TVM latency vs MetaSchedule trials, against ONNX Runtime measured at every point of the curve.

For ResNet-20 (CIFAR, 32x32, batch 1) and a ResNet-18-shaped 224x224 network (batch 1): ORT, TVM
untuned, then TVM after a growing, cumulative number of tuning trials in one database (each point
resumes the previous one, which is how a user extends a tuning run). At each point ORT and TVM are
timed alternately with the same harness (tridesign.compiler.timing.time_session: wall time of
one call after warm-up, median; --rounds blocks each), so machine load affects both alike. JSON goes to --out after every
point, so an interrupted run keeps its curve.

Convolutions run on the hand-written register-tiled kernels (tridesign.kernels.tir_dense_conv, and
tir_winograd_conv for the 3x3 stride-1 layers where it pays), whose tile and algorithm `tune`
measures per layer shape (reported as part of the tuning time); MetaSchedule tunes the rest
(pooling, the classifier). Budgets are given per MetaSchedule kernel (cumulative), since
networks differ in how many they have: `--per-kernel 8,32` on ResNet-20's 2 such kernels is 16 and
64 trials in all.

    .venv/bin/python benchmarks/tvm_tuning.py --models resnet20,resnet18 --per-kernel 8,32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from tridesign.compiler.backends.tvm import TvmBackend
from tridesign.compiler.export import torch_to_onnx
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.timing import time_session
from tridesign.compiler.onnx_io import normalize
from tridesign.compiler.tvm.tuning import tune_model


class OrtSession:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(self, inputs):
        return self.session.run(None, inputs)


def build(name: str):
    """(torch module, inputs) of a benchmarked network."""
    import torch

    from tridesign.models.deepzero import build_resnet20
    from tridesign.models.resnet import build_resnet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if name == "resnet20":
        return build_resnet20("paper"), {"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)}
    if name == "resnet18":
        return build_resnet(18), {"input": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}
    raise SystemExit(f"unknown model {name}")


def timed(session, inputs, repeat: int, budget_s: float) -> float:
    """Median ms; fewer repeats for slow (untuned) modules so one point stays within budget_s."""
    start = time.perf_counter()
    session.run(inputs)
    once = time.perf_counter() - start
    n = int(max(3, min(repeat, budget_s / max(once, 1e-6))))
    return float(np.median(time_session(session, inputs, n, warmup=2)))


def point(work: Path, onnx_path: Path, db: Path, inputs, trials: int, tuning_s: float, args) -> dict:
    """Compile with what the database holds now, check numbers, time ORT and TVM alternately."""
    out = Path(tempfile.mkdtemp(dir=work))
    backend = TvmBackend()
    result = backend.compile(onnx_path, out, CompileOptions(backend="tvm", tuning_db=db))
    tvm_session = backend.load(out)
    ort_session = OrtSession(onnx_path)
    got = next(iter(tvm_session.run(inputs).values()))
    want = ort_session.run(inputs)[0]
    ort_ms, tvm_ms = [], []
    for _ in range(args.rounds):
        ort_ms.append(timed(ort_session, inputs, args.repeat, args.point_budget_s / (2 * args.rounds)))
        tvm_ms.append(timed(tvm_session, inputs, args.repeat, args.point_budget_s / (2 * args.rounds)))
    row = {
        "trials": trials,
        "trials_per_kernel": trials // result.tuning["kernels"],
        "tuning_s": round(tuning_s, 1),
        "kernels": result.tuning["kernels"],
        "kernels_tuned": result.tuning["kernels_tuned"],
        "kernels_with_repacked_weights": result.tuning["kernels_with_repacked_weights"],
        "dense_convs": result.tuning.get("dense_convs", 0),
        "winograd_convs": result.tuning.get("winograd_convs", 0),
        "dense_conv_tiles_defaulted": result.tuning.get("dense_conv_tiles_defaulted", 0),
        "ort_ms": round(float(np.median(ort_ms)), 3),
        "tvm_ms": round(float(np.median(tvm_ms)), 3),
        "max_abs_err": float(np.abs(got - want).max()),
    }
    row["ratio_tvm_over_ort"] = round(row["tvm_ms"] / row["ort_ms"], 3)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet18")
    parser.add_argument("--per-kernel", default="8,32", help="cumulative trials per kernel at each point of the curve")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="alternating ORT/TVM timing blocks per point (median of their medians)")
    parser.add_argument("--point-budget-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tvm_tuning.json"))
    args = parser.parse_args()
    budgets = sorted(int(t) for t in args.per_kernel.split(","))
    report = {"benchmark": "tvm_tuning", "command": " ".join(sys.argv), "target": "host", "models": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tvm-tuning-bench-") as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            module, inputs = build(name)
            onnx_path = work / f"{name}.onnx"
            model = normalize(torch_to_onnx(module, inputs, ("logits",)))  # the graph `compile` sees
            onnx.save(model, onnx_path)
            db = work / f"db-{name}"  # a fresh database: the curve starts from nothing
            curve = report["models"][name] = []
            curve.append(point(work, onnx_path, db, inputs, 0, 0.0, args))
            kernels = curve[0]["kernels"]
            spent, spent_s = 0, 0.0
            for budget in budgets:
                tuned = tune_model(model, "host", (budget - spent) * kernels, db_dir=db, quiet=True)
                spent, spent_s = budget, spent_s + tuned["tuning_s"] + tuned["dense_conv_tiling_s"]
                curve.append(point(work, onnx_path, db, inputs, spent * kernels, spent_s, args))
                write(args.out, report)
            write(args.out, report)


def write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


if __name__ == "__main__":
    main()
