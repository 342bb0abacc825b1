"""Post-training static int8 quantization: QDQ format, per-channel weights, calibrated activations.

ONNX Runtime's quantization tool inserts QuantizeLinear/DequantizeLinear pairs around weights
(int8, symmetric, one scale per output channel) and activations (uint8, scales from MinMax
calibration on the given batches). QDQ is the format TensorRT and ORT's int8 kernels both read,
so the same file serves the host and a Jetson later. Whether int8 is *faster* depends on the CPU:
ORT fuses QDQ into integer kernels (VNNI where present); on a CPU without fast int8 paths, or for
tiny layers where the (de)quantization overhead dominates, int8 can be slower than fp32 -- we
measure it and say so in the returned `int8_slower` instead of assuming a speed-up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tridesign.errors import TridesignError, UsageError

LATENCY_WARMUP = 3
LATENCY_RUNS = 20


def saturates_int8() -> bool:
    """Whether this CPU's int8 kernels can saturate on full-range weights: x86 without VNNI.

    There ORT multiplies uint8 activations by int8 weights with `vpmaddubsw`, which adds pairs of
    products into int16 and saturates when both are large (ORT's quantization docs); VNNI
    (`vpdpbusd`) accumulates in int32. Measured on a Zen 3 (AVX2) VM: ResNet-20 drifted 11% from
    fp32 with 8-bit weights. Quantizing weights to 7 bits (`reduce_range`) keeps every pair sum in
    range.
    """
    import platform

    from tridesign.targets import host_cpu_flags

    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    return not ({"avx512_vnni", "avx_vnni"} & host_cpu_flags())


class _Reader:
    """The CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches = batches
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        """Start over (calibration methods that take a second pass over the data call it)."""
        self._it = iter(self._batches)


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def median_latency_ms(sess, inputs: dict[str, np.ndarray], runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one run of a raw ORT session after warm-up (ms), timed like `profile`."""
    from types import SimpleNamespace

    from tridesign.compiler.timing import time_session

    runner = SimpleNamespace(run=lambda feed: sess.run(None, feed))
    return float(np.median(time_session(runner, inputs, runs, LATENCY_WARMUP)))


def rekey_annotations(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> None:
    """Move weight-sparsity records from the fp32 weight names to the int8 initializers that replace them.

    The quantizer keeps node names, so a Conv/Gemm/MatMul is matched by name and its new weight
    operand (behind the DequantizeLinear) takes the record; records of weights that were not
    quantized keep their name.
    """
    from tridesign.annotations import WEIGHT_KEY, read_weight_sparsity, write_weight_sparsity
    from tridesign.compiler.sparsity.onnx_prune import weight_graph, weight_operand

    records = read_weight_sparsity(fp32)
    if not records:
        return
    fp32_graph, int8_graph = weight_graph(fp32), weight_graph(int8)
    old = {n.name: weight_operand(fp32, n, fp32_graph) for n in fp32.graph.node if n.name}
    moved = dict(records)
    for node in int8.graph.node:
        before = old.get(node.name)
        after = weight_operand(int8, node, int8_graph) if node.name in old else None
        if before in records and after and after != before:
            moved[after] = moved.pop(before, records[before])
    for prop in list(int8.metadata_props):
        if prop.key == WEIGHT_KEY:
            int8.metadata_props.remove(prop)
    write_weight_sparsity(int8, moved)


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    calibration: list[dict[str, np.ndarray]],
    evaluate: Callable[[Callable[[dict[str, np.ndarray]], np.ndarray]], float] | None = None,
) -> dict[str, Any]:
    """Quantize `onnx_path` to int8 QDQ at `out_path`; returns sizes, output drift and the latency ratio.

    `calibration` batches must be representative inputs (never test data). `evaluate`, when given,
    maps a predict function (inputs -> first output) to an accuracy, and the accuracy delta is
    reported too. The output file is written atomically (temporary sibling, then rename).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tridesign.atomic import atomic_file

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not calibration:
        raise UsageError("--quantize int8 needs at least one calibration batch")
    if not onnx_path.is_file():
        raise TridesignError(f"cannot quantize {onnx_path}: no such file")
    tmp_dir = out_path.parent / f".{out_path.name}.work"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        pre = tmp_dir / "pre.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        raw = tmp_dir / "int8.onnx"
        reduce_range = saturates_int8()
        quantize_static(
            str(pre), str(raw), _Reader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(raw))
        rekey_annotations(onnx.load(str(onnx_path), load_external_data=False), model)
        weights = "7-bit range" if reduce_range else "8-bit range"
        model.metadata_props.add(key="tridesign.quantization", value=f"int8 QDQ, per-channel weights ({weights}), MinMax")
        with atomic_file(out_path) as handle:
            handle.write(model.SerializeToString())
    finally:
        for f in tmp_dir.glob("*"):
            f.unlink()
        tmp_dir.rmdir()
    return compare_int8(onnx_path, out_path, calibration, evaluate) | {"weights_reduced_range": reduce_range}


def compare_int8(
    fp32_path: Path,
    int8_path: Path,
    inputs: list[dict[str, np.ndarray]],
    evaluate: Callable[[Callable[[dict[str, np.ndarray]], np.ndarray]], float] | None = None,
) -> dict[str, Any]:
    """fp32 vs int8 on the same inputs, measured in the same process: drift, agreement, latency."""
    fp32, int8 = session(fp32_path), session(int8_path)
    drift, agree, total = 0.0, 0, 0
    for batch in inputs:
        a, b = fp32.run(None, batch)[0], int8.run(None, batch)[0]
        drift = max(drift, float(np.abs(a - b).max()) / max(float(np.abs(a).max()), 1e-12))
        if a.ndim == 2:
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            total += a.shape[0]
    lat_fp32 = median_latency_ms(fp32, inputs[0])
    lat_int8 = median_latency_ms(int8, inputs[0])
    result: dict[str, Any] = {
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "uint8 per-tensor (MinMax)",
        "size_fp32_bytes": Path(fp32_path).stat().st_size,
        "size_int8_bytes": Path(int8_path).stat().st_size,
        "max_rel_output_drift": drift,
        "top1_agreement": agree / total if total else None,
        "latency_fp32_ms": lat_fp32,
        "latency_int8_ms": lat_int8,
        "speedup": lat_fp32 / lat_int8,
        "int8_slower": lat_int8 > lat_fp32,
    }
    if evaluate is not None:
        acc_fp32 = evaluate(lambda feed: fp32.run(None, feed)[0])
        acc_int8 = evaluate(lambda feed: int8.run(None, feed)[0])
        result |= {"accuracy_fp32": acc_fp32, "accuracy_int8": acc_int8,
                   "accuracy_delta": acc_int8 - acc_fp32}
    return result
