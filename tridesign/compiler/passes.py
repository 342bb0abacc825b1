"""Where the compile pipeline applies model sparsity, recovery and quantization.

Registered models are pruned in torch before export (channel pruning physically shrinks them),
optionally recovered with a short first-order finetune on their task data, and the records are
written onto the exported initializers. A user's ONNX is pruned on its weight initializers. Int8
quantization runs last, on the graph that will be compiled, so the manifest can report fp32 vs int8
measured side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from tridesign.artifact import FP32_FILE
from tridesign.compiler.options import CompileOptions
from tridesign.errors import UsageError
from tridesign.progress import step

if TYPE_CHECKING:
    import torch

    from tridesign.compiler.sparsity import PruneReport

QUANT_MODES = ("int8",)
CALIBRATION_BATCHES = 8
RANDOM_CALIBRATION = "seeded random inputs"
RANDOM_CALIBRATION_NOTE = "int8 scales were calibrated on random data; give --calibration"


def check_options(options: CompileOptions, registered: bool) -> None:
    """Reject combinations that cannot work before any expensive step runs."""
    if options.quantize is not None and options.quantize not in QUANT_MODES:
        raise UsageError(f"unknown --quantize {options.quantize!r}; choose one of: {', '.join(QUANT_MODES)}")
    if options.finetune_steps and not registered:
        raise UsageError("--finetune-steps needs a registered model (torch weights and task data), not an ONNX file")
    if options.finetune_steps and options.prune is None:
        raise UsageError("--finetune-steps recovers accuracy after pruning; give --prune too")


def prune_registered(
    module: "torch.nn.Module", model_name: str, options: CompileOptions, inputs: dict[str, np.ndarray]
) -> tuple["PruneReport | None", dict[str, Any]]:
    """Prune (and recover) a torch model in place; returns the report and what goes in the manifest."""
    if options.prune is None:
        return None, {}
    from tridesign.compiler.sparsity import prune_torch, recover_torch

    with step(f"pruning {model_name} ({options.prune})"):
        report = prune_torch(module, options.prune, inputs)
    described: dict[str, Any] = {"sparsity": report.summary()}
    if options.finetune_steps:
        with step(f"recovering with {options.finetune_steps} first-order finetune steps"):
            described["recovery"] = recover_torch(module, model_name, options.finetune_steps)
        params = dict(module.named_parameters())
        for name, record in report.records.items():
            # annotate_exported finds each weight by its values, which recovery has changed.
            record.values = params[name].detach().cpu().numpy().copy()
    module.eval()
    return report, described


def annotate(model: onnx.ModelProto, report: "PruneReport | None") -> None:
    if report is not None:
        from tridesign.compiler.sparsity import annotate_exported

        annotate_exported(model, report)


def prune_user_onnx(model: onnx.ModelProto, options: CompileOptions) -> dict[str, Any]:
    if options.prune is None:
        return {}
    from tridesign.compiler.sparsity import prune_onnx

    with step(f"pruning weight initializers ({options.prune})"):
        report = prune_onnx(model, options.prune)
    return {"sparsity": report.summary()}


def quantize(model_path: Path, options: CompileOptions, calibration: list[dict[str, np.ndarray]],
             calibration_data: str = RANDOM_CALIBRATION) -> dict[str, Any]:
    """Replace `model_path` by its int8 QDQ version, keeping the fp32 graph beside it;
    `calibration_data` says in the record what the batches were."""
    if not options.quantize:
        return {}
    from tridesign.compiler.quantize import quantize_int8

    fp32 = model_path.with_name(FP32_FILE)
    model_path.rename(fp32)
    with step("quantizing to int8 (static QDQ, per-channel weights)"):
        result = quantize_int8(fp32, model_path, calibration)
    result["calibration_batches"] = len(calibration)
    result["calibration_data"] = calibration_data
    return {"quantization": result}


def quantization_notes(quantized: dict[str, Any]) -> list[str]:
    """Say so when int8 does not pay off here (a user expects int8 to be faster), and when the
    weights were quantized to 7 bits because this CPU's int8 kernels saturate on 8."""
    result = quantized.get("quantization")
    if not result:
        return []
    notes = []
    if result.get("weights_reduced_range"):
        notes.append(
            "int8 weights use a 7-bit range: this x86 CPU has no VNNI, and ONNX Runtime's int8 kernels "
            "saturate on full-range weights there"
        )
    if result["int8_slower"]:
        notes.append(
            f"int8 is slower than fp32 with ONNX Runtime on this CPU ({result['latency_int8_ms']:.3f} ms vs "
            f"{result['latency_fp32_ms']:.3f} ms): at this size the quantize/dequantize overhead outweighs the int8 "
            "arithmetic (see BENCHMARKS.md: larger layers gain)"
        )
    return notes


def calibration_batches(make_inputs, seed: int) -> list[dict[str, np.ndarray]]:
    """Calibration inputs from the same factory as the verification inputs, other seeds."""
    return [make_inputs(seed + 1 + i) for i in range(CALIBRATION_BATCHES)]
