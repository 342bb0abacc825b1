"""The hand-written-kernel rewrites as one stage list: what each pass reports, and that `compile`
and `tune` run the same list and leave MetaSchedule the same kernels."""

from __future__ import annotations

import onnx
import tvm
import tvm_ffi

from tridesign.compiler.backends import tvm as tvm_backend_module
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.tvm import tuning
from tridesign.compiler.tvm.frontend import handwritten_kernels
from tridesign.compiler.tvm.rewrites import HAND_WRITTEN_KERNELS, RewriteContext, run_stages
from tridesign.deploy.tvm_runtime import import_onnx
from tridesign.targets import get_target


def context_for(model, target: str, db_dir) -> RewriteContext:
    """An untuned build that measures nothing: every conv on its default tile."""
    return RewriteContext(get_target(target).tvm_target(), model, db_dir, measure_tiles=False, dense_tuned=False)


def metaschedule_workloads(fused) -> list[int]:
    """Structural hashes of the kernels MetaSchedule tunes (the hand-written ones are not its)."""
    handwritten = handwritten_kernels(fused)
    return sorted(
        tvm_ffi.structural_hash(f) for gv, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and gv not in handwritten
    )


def test_each_pass_reports_its_counts_notes_and_decisions(conv_head, tmp_path):
    mod, _ = import_onnx(conv_head, batch=1)
    context = context_for(conv_head, "host", tmp_path / "db")
    results = {}
    for stage in HAND_WRITTEN_KERNELS:
        results[stage.name] = result = stage(mod, context)
        mod = result.mod
    assert list(results) == ["sparse_kernels", "dense_convs", "max_pools"]
    sparse = results["sparse_kernels"]
    assert sparse.notes == ("1 of 1 pruned layers run on sparse kernels",) and not sparse.counts
    assert [layer["weight"] for layer in sparse.sparse_layers if layer["sparse"]] == ["fc/w"]
    convs = results["dense_convs"]
    assert convs.counts == {"dense_convs": 1, "winograd_convs": 0, "dense_conv_tiles_defaulted": 1, "dense_conv_shapes_measured": 0}
    assert convs.notes == ("1 of 1 convolutions use the default register tile (tridesign tune measures the best one per layer)",)
    assert results["max_pools"].counts == {"max_pools": 1} and not results["max_pools"].notes
    merged = run_stages(import_onnx(conv_head, batch=1)[0], HAND_WRITTEN_KERNELS, context)
    assert merged.counts == {**convs.counts, "max_pools": 1}
    assert merged.notes == sparse.notes + convs.notes and merged.sparse_layers == sparse.sparse_layers
    tvm.ir.assert_structural_equal(merged.mod, mod)


def test_gpu_targets_keep_the_module_and_say_why_pruned_layers_stay_dense(conv_head, tmp_path):
    mod, _ = import_onnx(conv_head, batch=1)
    merged = run_stages(mod, HAND_WRITTEN_KERNELS, context_for(conv_head, "cuda:sm_90", tmp_path / "db"))
    assert merged.mod.same_as(mod) and not merged.counts and not merged.sparse_layers
    assert merged.notes == ("sparse kernels are CPU-only: the 1 pruned weights run dense on cuda",)


def test_compile_and_tune_run_one_stage_list_and_leave_metaschedule_the_same_kernels(
    tvm_backend, conv_head, tmp_path, monkeypatch
):
    ran: list[str] = []
    for stage in HAND_WRITTEN_KERNELS:
        original = type(stage).__call__

        def recorded(self, mod, context, original=original):
            ran.append(self.name)
            return original(self, mod, context)

        monkeypatch.setattr(type(stage), "__call__", recorded)
    tuned: list[list[int]] = []

    def tune_spy(fused, *args, **kwargs):
        """What MetaSchedule would be given, without measuring it."""
        tuned.append(metaschedule_workloads(fused))
        return {"tasks": len(tuned[-1]), "tuning_s": 0.0, "records_added": 0, "best_ms": {}}

    monkeypatch.setattr(tuning, "tune", tune_spy)
    monkeypatch.setattr(tvm_backend_module, "tune", tune_spy)
    db = tmp_path / "db"
    tuning.tune_model(conv_head, "host", 8, db_dir=db, quiet=True)
    names = [stage.name for stage in HAND_WRITTEN_KERNELS]
    assert ran == names
    path = tmp_path / "conv_head.onnx"
    onnx.save(conv_head, path)
    out = tmp_path / "art"
    out.mkdir()
    tvm_backend.compile(path, out, CompileOptions(backend="tvm", tune_trials=8, tuning_db=db))
    assert ran == names + names
    assert len(tuned) == 2 and tuned[0] == tuned[1] and tuned[0]
