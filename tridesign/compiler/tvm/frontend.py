"""ONNX → Relax → the project's rewrites → fused TIR (the front half), and TVM's closing stages.

The chain follows TVM's own Relax pipeline stages (library dispatch, legalize + fuse, dataflow
lowering, finalize) with two insertions: before fusion, the rewrites onto tridesign.kernels
(tridesign.compiler.tvm.rewrites); between fusion and lowering, the tuning database is applied to
the fused kernels (tridesign.compiler.tvm.tuning). `compile` and `tune` both start with
`front_half`, so MetaSchedule tunes exactly the kernels `compile` later looks up.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any

from tridesign.compiler.tvm.rewrites import HAND_WRITTEN_KERNELS, RewriteContext, StageResult, run_stages
from tridesign.deploy.tvm_runtime import import_onnx


@dataclass(frozen=True)
class FrontHalf:
    """A model taken up to the kernels MetaSchedule tunes."""

    fused: Any  # the module of fused TIR PrimFuncs (hand-written ones included), not scheduled yet
    io: dict[str, Any]  # inputs and outputs in call order, and the notes on fixed shapes (import_onnx)
    rewrites: StageResult  # HAND_WRITTEN_KERNELS' merged counts, notes and sparse-layer decisions
    rewrite_s: float  # seconds the rewrites took, tile measurement included


def front_half(context: RewriteContext, batch: int) -> FrontHalf:
    """ONNX → Relax (batch fixed) → HAND_WRITTEN_KERNELS → fused TIR, for `compile` and `tune` alike."""
    mod, io = import_onnx(context.model, batch=batch)
    start = time.perf_counter()
    rewrites = run_stages(mod, HAND_WRITTEN_KERNELS, context)
    rewrite_s = time.perf_counter() - start
    return FrontHalf(lower_fused(rewrites.mod, context.target), io, rewrites, rewrite_s)


def backend_pipeline(target: Any) -> Any:
    """TVM's per-backend stage lists (the module behind relax.get_default_pipeline)."""
    kind = "cuda" if target.kind.name == "cuda" else "cpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{kind}.pipeline")


def lower_fused(mod: Any, target: Any) -> Any:
    """Relax → fused TIR PrimFuncs (the unit MetaSchedule tunes), before any scheduling.

    Weights are marked layout-free: a tuned CPU schedule may then read them in a blocked layout
    of its choosing (MetaSchedule's RewriteLayout), which `tuning.apply_database` repacks once at
    compile time. Without it every convolution reads OIHW weights with strided loads, and tuned
    ResNet-20 ran 2.5x slower at the same number of trials.
    """
    import tvm
    from tvm import relax

    passes = backend_pipeline(target).library_dispatch_passes(target) + [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target:
        return mark_constant_weights(tvm.transform.Sequential(passes)(mod))


def mark_constant_weights(mod: Any) -> Any:
    """Mark the parameters every call site feeds a constant as layout-free (`layout_free_buffers`).

    What relax.transform.AttachAttrLayoutFreeBuffers does for MetaSchedule's kernels, without
    touching hand-written kernels: that pass rewrites their signatures and loses the symbolic
    non-zero count of the sparse kernels (which pack their own weights anyway).
    """
    import tvm
    from tvm import relax

    handwritten = handwritten_kernels(mod)
    constant_params: dict[Any, set[int]] = {}
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if not isinstance(call, relax.Call) or getattr(call.op, "name", "") != "relax.call_tir":
                    continue
                callee, args = call.args[0], call.args[1].fields
                consts = {i for i, arg in enumerate(args) if isinstance(arg, tvm.ir.GenericConst)}
                constant_params[callee] = consts & constant_params.get(callee, consts)
    for callee, indices in constant_params.items():
        if indices and callee not in handwritten:
            mod[callee] = mod[callee].with_attr("layout_free_buffers", sorted(indices))
    return mod


def handwritten_kernels(mod: Any) -> dict[Any, Any]:
    """The PrimFuncs of tridesign.kernels (plain loops, no root block), which TVM's schedule and
    layout passes do not apply to; MetaSchedule's kernels all have a root block."""
    from tvm import s_tir, tirx

    return {
        gv: f for gv, f in mod.functions.items()
        if isinstance(f, tirx.PrimFunc) and not isinstance(f.body, s_tir.SBlockRealize)
    }


def finish(mod: Any, target: Any) -> Any:
    """Schedule what tuning left for GPUs (DLight), then TVM's dataflow-lowering and finalize stages."""
    import tvm

    passes = []
    if target.kind.name == "cuda":
        from tvm.s_tir import dlight as dl

        passes.append(
            dl.ApplyDefaultSchedule(
                dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()
            )
        )
    stages = backend_pipeline(target)
    passes += stages.dataflow_lower_passes(target) + stages.finalize_passes(target)
    with target:
        return tvm.transform.Sequential(passes)(mod)
