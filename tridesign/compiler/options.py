"""Options of one compilation, grouped so the pipeline and every backend take one object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tridesign.sparsity_plan import SparsityPlan


@dataclass(frozen=True)
class CompileOptions:
    backend: str = "ort"  # a name in tridesign.compiler.backends.BACKENDS
    target: str = "host"  # a name in the target registry (tridesign.targets)
    tune_trials: int = 0  # MetaSchedule trials for TVM; 0 = untuned (and the manifest says so)
    tuning_db: Path | None = None  # a persistent MetaSchedule database to reuse and extend
    prune: SparsityPlan | None = None  # parsed once from --prune (a SPEC or a YAML path); prints as given
    quantize: str | None = None  # "int8" (static QDQ, per-channel weights)
    finetune_steps: int = 0  # first-order recovery steps after pruning (registered models only)
    config: str = "tiny"  # model config when the source is a registered model
    batch: int = 1  # batch size of the example inputs used for verification and profiling
    seed: int = 0  # seed of the example inputs
    # --input-shape: ((input name, dims), ...) fixed in a user's ONNX before it is compiled; a
    # tuple of pairs, not a dict, so the options stay hashable
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()


def input_shapes_option(shapes: Mapping[str, Sequence[int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`parse_input_shapes`' dict as the hashable `CompileOptions.input_shapes`."""
    return tuple((name, tuple(dims)) for name, dims in shapes.items())
