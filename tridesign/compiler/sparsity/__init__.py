"""Model sparsity: what to prune (importance), how (prune_fns, pattern, channel), when (schedule).

The compile pipeline calls five functions:

- `prune_torch(model, plan, example_inputs) -> PruneReport`   registered models, before export
- `recover_torch(model, model_name, steps) -> dict`           first-order recovery on task data
- `annotate_exported(onnx_model, report) -> None`              records onto the exported initializers
- `prune_onnx(onnx_model, plan) -> PruneReport`                a user's ONNX file, annotated in place
- `tridesign.compiler.quantize.quantize_int8(...)`             int8 QDQ after pruning

The plan they take is parsed once, by `tridesign.sparsity_plan` (a root contract, since the
simulator reads the same grammar), not by this package.
"""

from tridesign.compiler.sparsity.recovery import recover_torch
from tridesign.compiler.sparsity.onnx_prune import annotate_exported, prune_onnx
from tridesign.compiler.sparsity.report import LayerRecord, PruneReport
from tridesign.compiler.sparsity.torch_pass import prune_torch

__all__ = [
    "LayerRecord",
    "PruneReport",
    "annotate_exported",
    "prune_onnx",
    "prune_torch",
    "recover_torch",
]
