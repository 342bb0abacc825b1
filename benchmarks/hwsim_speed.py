"""hwsim speed: dense ResNet-18 (224x224) on a 32x32 weight-stationary array.

Measures, in one run: our whole-network simulation (true counts, and SCALE-Sim-compatible
counts), median of --repeat runs after a warm-up, as layers/s; and, when the `scalesim` package is
installed, SCALE-Sim's own compute stage on the same conv/FC layers (pre-padded inputs), its time,
the speed ratio and how many layers' compute cycles agree exactly with our `scalesim` mode.

SCALE-Sim's timed part is its compute stage only (operand and demand matrices): its memory stage
fails under numpy >= 2.3 in scalesim 3.0.0 and would only add time, so the ratio is a lower bound.

    .venv/bin/python benchmarks/hwsim_speed.py [--out benchmarks/results/hwsim_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnx

from tridesign.hwsim import scalesim_ref
from tridesign.compiler.reference_nets import build_onnx
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import spec_from_dict
from tridesign.hwsim.workload import load_workload


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _scalesim_layers(model: onnx.ModelProto) -> list[tuple[str, tuple]]:
    """SCALE-Sim inputs (pre-padded ifmap) for each Conv/Gemm layer of the workload."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.value_info]}
    inits = {t.name: list(t.dims) for t in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            _, c, h, w = shapes[node.input[0]]
            k, _, kh, kw = inits[node.input[1]]
            pads = attrs.get("pads", [0, 0, 0, 0])
            out.append((node.name, (h + pads[0] + pads[2], w + pads[1] + pads[3], kh, kw, c, k, attrs.get("strides", [1])[0])))
        elif node.op_type == "Gemm":
            n, kdim = inits[node.input[1]]  # transB=1 from torch's Linear
            out.append((node.name, ("gemm", 1, kdim, n)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hwsim_speed.json"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    system = spec_from_dict({"version": 1, "name": "32x32-ws", "devices": {"d": dict(
        array_rows=32, array_cols=32, clock_mhz=200, ifmap_sram_kib=256, filter_sram_kib=256, ofmap_sram_kib=128,
        dram_gbps=10, dataflow="ws")}})
    with tempfile.TemporaryDirectory() as tmp:
        path = build_onnx(18, 224, 224, Path(tmp) / "resnet18.onnx")
        model = onnx.load(str(path))
    workload = load_workload(model, "resnet18-224")
    n_layers = len(workload.layers)
    ours_true = _median_time(lambda: simulate(workload, system), args.repeat)
    ours_ss = _median_time(lambda: simulate(workload, system, mode="scalesim"), args.repeat)
    result = {
        "workload": "ResNet-18 224x224, batch 1 (dense)", "array": "32x32 WS", "layers": n_layers,
        "gemm_layers": sum(1 for layer in workload.layers if layer.kind == "gemm"),
        "ours_true_s": ours_true, "ours_scalesim_mode_s": ours_ss,
        "ours_layers_per_s": n_layers / ours_true, "goal_s": 2.0, "goal_met": ours_true <= 2.0,
    }
    print(f"ours: {n_layers} layers in {ours_true * 1e3:.2f} ms (true) / {ours_ss * 1e3:.2f} ms (scalesim mode)"
          f" = {n_layers / ours_true:,.0f} layers/s")
    if scalesim_ref.available():
        ours = {r.name: r.compute_cycles for r in simulate(workload, system, mode="scalesim").layers}
        layers = _scalesim_layers(model)
        start = time.perf_counter()
        ref = {}
        for name, geom in layers:
            if geom[0] == "gemm":
                ref[name] = scalesim_ref.gemm_compute_cycles("ws", 32, 32, *geom[1:])
            else:
                ref[name] = scalesim_ref.conv_compute_cycles("ws", 32, 32, *geom)
        scalesim_s = time.perf_counter() - start
        agree = sum(ours[n] == c for n, c in ref.items())
        result.update({
            "scalesim_compute_stage_s": scalesim_s, "scalesim_layers": len(ref),
            # ours simulates all 48 layers (vector ones too), SCALE-Sim only the 21 GEMM layers
            "speed_ratio_scalesim_over_ours": scalesim_s / ours_ss,
            "cycles_agree": agree, "cycles_total_ours": sum(ours[n] for n in ref), "cycles_total_scalesim": sum(ref.values()),
        })
        print(f"SCALE-Sim compute stage: {len(ref)} layers in {scalesim_s:.1f} s; ratio {scalesim_s / ours_ss:,.0f}x;"
              f" cycles agree on {agree}/{len(ref)} layers")
    else:
        result["scalesim"] = "not installed (pip install 'tridesign[hwsim-ref]')"
        print("scalesim not installed: no reference comparison")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
