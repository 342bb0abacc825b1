"""The tile-sparse TVM executor against ONNX Runtime dense on the masked tracking detector.

The "track" `CenterDetector` (ResNet-18 width 16 + FPN 32, 192×352 input; random weights with
random BatchNorm statistics, folded by the exporter) runs on one synthetic HD frame (`videos synth`
seed 7, 1280×720, resized to the network) with the patch masks `tridesign track` makes: 60-px
patches scored by smoothed Sobel magnitude, the lowest 0 / 20 / 50 % of the area dropped. Engines:

- `ort`: ONNX Runtime, the same graph, dense weights (the mask is applied, everything computed);
- `tvm dense`: the TVM backend's compile path (`compile --backend tvm`: register-tiled dense convs);
- `tile`: `TileSparseNetwork` (tridesign.kernels.tile_network), dense weights and 90 %
  pattern-pruned weights (every conv: 3×3 kernels keep their best 4-of-9 pattern and only the
  strongest 22.5 % of kernels survive; 1×1 and 7×7 magnitude-pruned to 10 %).

Every timer is the median of `--repeat` calls after warm-up; the timers take turns in every round
(the shared VM's load swings within seconds) and each reports its median and best round.

    .venv/bin/python benchmarks/tile_network.py [--rounds 10] [--out benchmarks/results/tile_network.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from tridesign.atomic import write_text_atomic
from tridesign.compiler.timing import median_ms
from tridesign.data.detections import network_input
from tridesign.data.video_sparsity import patch_mask, patch_scores, to_network_mask
from tridesign.data.video_synth import SynthConfig, render
from tridesign.kernels.mask_macs import conv_macs
from tridesign.kernels.tile_network import TileSparseNetwork

CONFIG = "track"
DROPS = (0.0, 0.2, 0.5)
PATCH_PX = 60
FRAME_HW = (720, 1280)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def detector_onnx() -> onnx.ModelProto:
    import torch

    from tridesign.compiler.export import torch_to_onnx
    from tridesign.models.video_detector import CENTER_CONFIGS, CenterDetector

    cfg = CENTER_CONFIGS[CONFIG]
    torch.manual_seed(0)
    net = CenterDetector(cfg).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    inputs = {"image": np.zeros((1, 3, *cfg.image_hw), np.float32), "patch_mask": np.ones((1, 1, *cfg.mask_hw()), np.float32)}
    return torch_to_onnx(net, inputs, ("heatmap", "boxes"))


def pattern_prune(w: np.ndarray, density: float = 0.1) -> np.ndarray:
    """3×3: best 4-of-9 pattern per kernel, the strongest kernels kept to `density`; else magnitude."""
    from tridesign.compiler.sparsity.pattern import PATTERNS

    if w.shape[2:] != (3, 3):
        keep = max(1, round(w.size * density))
        return np.where(np.abs(w) >= np.sort(np.abs(w).ravel())[-keep], w, 0).astype(np.float32)
    kernels = w.reshape(-1, 9).astype(np.float64)
    energy = kernels**2 @ PATTERNS.reshape(len(PATTERNS), 9).T
    best = energy.argmax(axis=1)
    survivors = np.argsort(-energy.max(axis=1))[: max(1, round(len(kernels) * density * 9 / 4))]
    mask = np.zeros(kernels.shape, bool)
    mask[survivors] = PATTERNS.reshape(-1, 9)[best[survivors]]
    return (w.reshape(-1, 9) * mask).reshape(w.shape).astype(np.float32)


def pruned(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights = {node.input[1] for node in out.graph.node if node.op_type == "Conv"}
    for init in out.graph.initializer:
        if init.name in weights:
            init.CopyFrom(numpy_helper.from_array(pattern_prune(numpy_helper.to_array(init)), init.name))
    return out


def frame_inputs(image_hw: tuple[int, int], mask_hw: tuple[int, int]) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    frame = next(iter(render(SynthConfig(seed=7, frames=1, width=FRAME_HW[1], height=FRAME_HW[0], objects=8))))[0]
    scores = patch_scores(frame, PATCH_PX)
    masks = {drop: to_network_mask(patch_mask(scores, drop, None, PATCH_PX, FRAME_HW), mask_hw, FRAME_HW, PATCH_PX) for drop in DROPS}
    return network_input(frame, image_hw), masks


def tvm_dense(model: onnx.ModelProto) -> Callable[[np.ndarray, np.ndarray], object]:
    """The module `compile --backend tvm` builds (untuned; default register tiles), run from numpy."""
    import tvm
    from tvm import relax

    from tridesign.compiler.tvm.frontend import finish, front_half
    from tridesign.compiler.tvm.rewrites import RewriteContext
    from tridesign.targets import tvm_target

    target = tvm_target("host")
    front = front_half(RewriteContext(target, model, Path("/nonexistent-tuning-db"), False, False), 1)
    vm = relax.VirtualMachine(tvm.compile(finish(front.fused, target), target), tvm.cpu())
    return lambda image, mask: vm["main"](tvm.runtime.tensor(image), tvm.runtime.tensor(mask))


def run(args: argparse.Namespace) -> dict:
    model = detector_onnx()
    sparse_model = pruned(model)
    h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    image, masks = frame_inputs((h, w), (h // 16, w // 16))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    built = {}
    start = time.perf_counter()
    dense_net = TileSparseNetwork(model)
    built["tile dense weights"] = dense_net.build_s
    sparse_net = TileSparseNetwork(sparse_model)
    built["tile pruned 90%"] = sparse_net.build_s
    start = time.perf_counter()
    tvm_run = tvm_dense(model)
    built["tvm dense"] = time.perf_counter() - start

    errors = {}
    for drop, mask in masks.items():
        ref = session.run(None, {"image": image, "patch_mask": mask})
        got = dense_net.run(image, mask)
        errors[f"{drop:g}"] = max(float(np.abs(got[n] - r).max() / np.abs(r).max()) for n, r in zip(("heatmap", "boxes"), ref))

    repeat = args.repeat
    timers: dict[str, Callable[[], float]] = {
        "ort": lambda: median_ms(lambda: session.run(None, {"image": image, "patch_mask": masks[0.2]}), repeat),
        "tvm dense": lambda: median_ms(lambda: tvm_run(image, masks[0.2]), repeat),
    }
    for drop, mask in masks.items():
        timers[f"tile drop {drop:.0%}"] = lambda m=mask: median_ms(lambda: dense_net.run(image, m), repeat)
        timers[f"tile pruned drop {drop:.0%}"] = lambda m=mask: median_ms(lambda: sparse_net.run(image, m), repeat)
    for timer in timers.values():  # warm-up round
        timer()
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            samples[name].append(timer())
    ort_median = float(np.median(samples["ort"]))
    rows = {}
    for name, values in samples.items():
        rows[name] = {"median_ms": round(float(np.median(values)), 3), "best_ms": round(float(np.min(values)), 3),
                      "speedup_vs_ort": round(ort_median / float(np.median(values)), 3)}
    macs = {}
    for drop, mask in masks.items():
        dense_macs, sparse_macs = dense_net.macs(mask), sparse_net.macs(mask)
        macs[f"{drop:.0%}"] = {
            "active_patch_fraction": float(mask.mean()),
            "dense": dense_macs["dense"], "active": dense_macs["active"],
            "computed_dense_weights": dense_macs["computed"], "computed_pruned": sparse_macs["computed"],
            "ort_computed": conv_macs(model, mask)["computed"],
        }
        if drop == 0.2:
            layers = [{k: layer[k] for k in ("node", "feature_stride", "kernel", "tile", "active_fraction", "active", "computed")}
                      for layer in dense_macs["layers"]]
    return {
        "benchmark": "tile_network",
        "config": CONFIG,
        "input_hw": [h, w],
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "rounds": args.rounds,
        "repeat": repeat,
        "build_s": {k: round(v, 2) for k, v in built.items()},
        "max_rel_error_vs_ort": errors,
        "timings": rows,
        "macs": macs,
        "layers_at_20pct": layers,
    }


def print_report(report: dict) -> None:
    print(f"{report['config']} {report['input_hw']} — {report['threads']} threads, load {report['load_average']}")
    print(f"build s: {report['build_s']}   max |err|/max|ref| vs ORT: {report['max_rel_error_vs_ort']}")
    print(f"{'engine':<24}{'median ms':>10}{'best ms':>10}{'× ORT':>8}")
    for name, row in report["timings"].items():
        print(f"{name:<24}{row['median_ms']:>10.3f}{row['best_ms']:>10.3f}{row['speedup_vs_ort']:>8.2f}")
    print(f"{'drop':<6}{'active patches':>15}{'dense M':>9}{'active M':>9}{'computed M':>11}{'pruned M':>9}")
    for drop, row in report["macs"].items():
        print(f"{drop:<6}{row['active_patch_fraction']:>15.3f}{row['dense'] / 1e6:>9.1f}{row['active'] / 1e6:>9.1f}"
              f"{row['computed_dense_weights'] / 1e6:>11.1f}{row['computed_pruned'] / 1e6:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=CORES, help="threads of both engines (default: this process's cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tile_network.json"))
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM's thread pool exists
    report = run(args)
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
