"""torch -> ONNX export, verified against torch through ONNX Runtime.

Uses the TorchScript-based exporter (`dynamo=False`): it handles every model in the zoo, including
the transformers/diffusers ones, and folds BatchNorm into Conv in eval mode -- what deploys.
Every export is checked (onnx checker, shape inference) and its outputs compared with torch on
seeded inputs; above the model's stated tolerance the export fails and nothing is written.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from tridesign.atomic import write_bytes_atomic
from tridesign.compiler.onnx_io import TARGET_OPSET
from tridesign.errors import TridesignError
from tridesign.models.registry import ModelSpec, get_model
from tridesign.verification import compare_outputs, run_onnxruntime

if TYPE_CHECKING:
    import torch


@dataclass
class ExportReport:
    model: str
    config: str
    path: str
    opset: int
    atol: float
    max_abs_err: float
    max_rel_err: float  # max |onnx - torch| / max |torch|, per output, worst output
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_to_onnx(
    module: "torch.nn.Module",
    inputs: dict[str, np.ndarray],
    output_names: tuple[str, ...],
    dynamic_axes: dict | None = None,
) -> onnx.ModelProto:
    """Export an eval-mode module to an in-memory ONNX model (opset 17, constants folded)."""
    import torch

    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values())
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            input_names=list(inputs),
            output_names=list(output_names),
            opset_version=TARGET_OPSET,
            dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()} or None,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def torch_outputs(module: "torch.nn.Module", inputs: dict[str, np.ndarray], output_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return {name: t.detach().numpy() for name, t in zip(output_names, outs)}


def export_verified(
    spec: ModelSpec, module: "torch.nn.Module", config: str, inputs: dict[str, np.ndarray]
) -> tuple[onnx.ModelProto, ExportReport]:
    """Export `module` (built from `spec`) and verify it against torch; raise above tolerance."""
    model = torch_to_onnx(module, inputs, spec.output_names, dict(spec.dynamic_axes))
    model.metadata_props.add(key="tridesign.source", value=f"{spec.name}:{config}")
    reference = torch_outputs(module, inputs, spec.output_names)
    got = run_onnxruntime(model, inputs)
    max_abs, max_rel = compare_outputs(reference, got)
    report = ExportReport(spec.name, config, "", TARGET_OPSET, spec.atol, max_abs, max_rel, max_abs <= spec.atol)
    if not report.passed:
        raise TridesignError(
            f"export of {spec.name}:{config} does not match torch: max abs error {max_abs:.3g} > tolerance {spec.atol:g}"
        )
    return model, report


def export_model(name: str, config: str, path: Path, batch: int = 1, seed: int = 0) -> ExportReport:
    """Build a registered model, export it to `path` (atomically) and verify it against torch."""
    spec = get_model(name)
    spec.check_config(config)
    import torch

    torch.manual_seed(seed)
    module = spec.instantiate(config)
    model, report = export_verified(spec, module, config, spec.example_inputs(config, batch, seed))
    write_bytes_atomic(Path(path), model.SerializeToString())
    report.path = str(path)
    return report
