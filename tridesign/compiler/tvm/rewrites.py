"""The project's own Relax rewrites: pruned layers, convolutions and max-pools onto tridesign.kernels.

Each rewrite is a pass object — a `name` and `__call__(mod, context) -> StageResult` — that
returns what it did (counts for the manifest, notes for the user, sparse-layer decisions) with
the rewritten module, and `run_stages` merges those results in order. `HAND_WRITTEN_KERNELS` is
the one stage list: `compile` and `tune` both run it before MetaSchedule sees the module
(tridesign.compiler.tvm.frontend.front_half), so the kernels left to MetaSchedule — and so the
workloads its records are keyed by — are the same in both. The rewrites apply to CPU targets
only; on a GPU target they leave the module as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tridesign.annotations import read_weight_sparsity
from tridesign.progress import step


@dataclass(frozen=True)
class RewriteContext:
    """What the rewrites know about one build; the same for every pass of a stage list."""

    target: Any  # the tvm.target.Target the module is built for
    model: Any  # the ONNX model the module was imported from, for its weight-sparsity annotations
    db_dir: Path  # the target's tuning database: its conv_tiles.json holds the measured conv tiles
    measure_tiles: bool  # time the tile candidates of convolutions nobody measured yet, here
    dense_tuned: bool  # whether the dense code the sparse kernels compete with is tuned (SparseKernels)


@dataclass(frozen=True)
class StageResult:
    """What a pass (or a whole stage list, merged) did: the module after it and what it reports."""

    mod: Any
    counts: dict[str, int] = field(default_factory=dict)  # tuning report keys of the manifest
    notes: tuple[str, ...] = ()
    sparse_layers: tuple[dict[str, Any], ...] = ()  # per pruned layer: ran sparse or dense, and why


class RelaxRewrite(Protocol):
    name: str

    def __call__(self, mod: Any, context: RewriteContext) -> StageResult: ...


@dataclass(frozen=True)
class SparseKernels:
    """Put pruned layers on the custom sparse kernels (CPU targets) where they beat dense.

    The crossover depends on what dense code they compete with: against tuned dense kernels only
    clearly sparse layers switch; against TVM's untuned defaults every annotated layer does.
    """

    name: ClassVar[str] = "sparse_kernels"

    def __call__(self, mod: Any, context: RewriteContext) -> StageResult:
        records = read_weight_sparsity(context.model)
        if not records:
            return StageResult(mod)
        kind = context.target.kind.name
        if kind != "llvm":
            return StageResult(mod, notes=(f"sparse kernels are CPU-only: the {len(records)} pruned weights run dense on {kind}",))
        from tridesign.kernels.relax_integration import SparsePolicy, sparsify_module

        policy = SparsePolicy() if context.dense_tuned else SparsePolicy.for_untuned_module()
        mod, layers = sparsify_module(mod, context.model, policy, records)
        pruned = sum(1 for layer in layers if layer.density is not None)  # the others have no record: dense
        note = f"{sum(layer.sparse for layer in layers)} of {pruned} pruned layers run on sparse kernels"
        return StageResult(mod, notes=(note,), sparse_layers=tuple(layer.as_dict() for layer in layers))


@dataclass(frozen=True)
class DenseConvs:
    """Put ungrouped fp32 convolutions (and their bias/residual/ReLU) on the hand-written kernels.

    CPU targets only. Each layer runs with the tile and algorithm `tune` measured for it
    (conv_tiles.json in the target's database); `measure_tiles` times the candidates of layers not
    measured yet, here. Layers nobody measured use the default tile, and a note says how many.
    """

    name: ClassVar[str] = "dense_convs"

    def __call__(self, mod: Any, context: RewriteContext) -> StageResult:
        if context.target.kind.name != "llvm":
            return StageResult(mod)
        from tridesign.kernels.conv_tiles import TileBook
        from tridesign.kernels.relax_dense_conv import conv_layers, dense_conv_module

        book = TileBook.load(context.db_dir)
        todo = book.missing(conv_layers(mod)) if context.measure_tiles else []
        if todo:
            with step(f"measuring register tiles for {len(todo)} convolution shapes"):
                book.measure_missing(todo, context.target)
            book.save()
        mod, layers = dense_conv_module(mod, book, context.target)
        notes: tuple[str, ...] = ()
        if book.defaulted:
            notes = (
                f"{book.defaulted} of {len(layers)} convolutions use the default register tile "
                "(tridesign tune measures the best one per layer)",
            )
        counts = {
            "dense_convs": len(layers),
            "winograd_convs": sum(1 for _, tile in layers if tile.winograd),
            "dense_conv_tiles_defaulted": book.defaulted,
            "dense_conv_shapes_measured": len(todo),
        }
        return StageResult(mod, counts=counts, notes=notes)


@dataclass(frozen=True)
class MaxPools:
    """Put max-pools on the hand-written kernel (CPU targets), which MetaSchedule cannot schedule.

    A pool the kernel does not cover (ceil mode, dilation, another layout) stays with TVM's
    legalized reduction, and a note says so.
    """

    name: ClassVar[str] = "max_pools"

    def __call__(self, mod: Any, context: RewriteContext) -> StageResult:
        if context.target.kind.name != "llvm":
            return StageResult(mod)
        from tridesign.kernels.relax_max_pool import max_pool_module

        mod, rewritten, left = max_pool_module(mod)
        notes = (f"{left} max-pool(s) not covered by the hand-written kernel run on TVM's generic reduction",) if left else ()
        return StageResult(mod, counts={"max_pools": rewritten}, notes=notes)


# Sparse first: a pruned convolution the sparse kernel takes is no longer there for the dense one.
HAND_WRITTEN_KERNELS: tuple[RelaxRewrite, ...] = (SparseKernels(), DenseConvs(), MaxPools())


def run_stages(mod: Any, stages: Sequence[RelaxRewrite], context: RewriteContext) -> StageResult:
    """Run the passes in order on `mod`; their counts, notes and sparse-layer decisions merged."""
    counts: dict[str, int] = {}
    notes: list[str] = []
    sparse_layers: list[dict[str, Any]] = []
    for stage in stages:
        result = stage(mod, context)
        mod = result.mod
        counts.update(result.counts)
        notes += result.notes
        sparse_layers += result.sparse_layers
    return StageResult(mod, counts, tuple(notes), tuple(sparse_layers))
