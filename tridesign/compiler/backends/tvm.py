"""Apache TVM backend: ONNX → Relax → fused TIR (tuned where a MetaSchedule record exists) → module.

The stages live in tridesign.compiler.tvm (front half shared with `tune`, then the tuning database
applied to the fused kernels, so `compile` reuses what `tune` measured); this file builds and
exports the module and loads it back through the device-side runtime (tridesign.deploy.tvm_runtime).
The artifact holds `module.so` (or `module.tar` when a cross compiler is missing), `tvm_io.json`
(input and output names in call order, so the module runs without the ONNX file), and a copy of the
tuning database it was built with.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.artifact import TUNING_DIR, TVM_IO_FILE
from tridesign.compiler.backends.base import CompileResult, LayerTiming
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.tvm.frontend import finish, front_half
from tridesign.compiler.tvm.rewrites import RewriteContext
from tridesign.compiler.tvm.tuning import apply_database, copy_database, default_db_dir, has_records, tune
from tridesign.deploy.tvm_runtime import TvmSession
from tridesign.board.tvm_module import configure_tvm_runtime
from tridesign.targets import TargetSpec, cross_compiler_available, get_target

PREPACKED_SUFFIX = "_prepacked"  # TVM's name for a kernel reading weights in a tuned layout


def export(executable: Any, spec: TargetSpec, out_dir: Path) -> tuple[str, list[str]]:
    """Write the compiled module; cross targets link with their cross compiler or fall back to .tar."""
    from tvm.support import cc

    notes: list[str] = []
    if spec.cross_compiler is None:
        name = "module.so"
        executable.export_library(str(out_dir / name))
    elif cross_compiler_available(spec):
        name = "module.so"
        executable.export_library(str(out_dir / name), fcompile=cc.cross_compiler(spec.cross_compiler))
    else:
        name = "module.tar"
        executable.export_library(str(out_dir / name))
        notes.append(
            f"{spec.cross_compiler} not found: wrote object files (module.tar); link them on the board, "
            "or install the cross toolchain (scripts/cross_root.sh) and compile again"
        )
    return name, notes


def kernel_op_type(symbol: str) -> str:
    """`fused_conv2d3_add2_relu1` → `conv2d+add+relu`: the ops a fused kernel holds, without counters.

    The hand-written dense convs name their epilogue in their symbol (`dense_conv2d_<shape>_t8x16_res_relu`,
    `winograd_conv2d_<shape>_t16x16_relu`); the hand-written max-pool is `max_pool2d_<shape>_k3x3_s2x2_p1x1`.
    """
    if symbol.startswith("max_pool2d_"):
        return "max_pool2d"
    if symbol.startswith(("dense_conv2d_", "winograd_conv2d_")):
        epilogue = symbol.rstrip("0123456789").split("_t", 1)[-1]
        return "conv2d" + ("+add" if "_res" in epilogue else "") + ("+relu" if "_relu" in epilogue else "")
    parts = symbol.removeprefix("fused_").removesuffix(PREPACKED_SUFFIX).split("_")
    ops = [p.rstrip("0123456789") for p in parts]
    return "+".join(op for op in ops if op) or symbol


class TvmBackend:
    """ONNX → Relax → TVM module for a named target (tridesign.targets)."""

    name = "tvm"

    def available(self) -> str | None:
        try:
            import tvm  # noqa: F401
            from tvm import relax  # noqa: F401
        except ImportError as err:
            return f"apache-tvm is not importable ({err})"
        return None

    def compile(self, onnx_path: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        import onnx
        import tvm

        configure_tvm_runtime()
        spec = get_target(options.target)
        target = spec.tvm_target()
        db_dir = Path(options.tuning_db) if options.tuning_db else default_db_dir(spec)
        context = RewriteContext(
            target,
            onnx.load(str(onnx_path)),
            db_dir,
            measure_tiles=options.tune_trials > 0 and spec.runs_here,
            dense_tuned=options.tune_trials > 0 or has_records(db_dir),
        )
        front = front_half(context, options.batch)
        notes = [*front.io["notes"], *front.rewrites.notes]
        report: dict[str, Any] = {"database": str(db_dir), "trials": options.tune_trials, **front.rewrites.counts}
        if options.tune_trials > 0:
            report.update(tune(front.fused, spec, options.tune_trials, db_dir))
        fused, applied, total = apply_database(front.fused, target, db_dir)
        repacked = sum(1 for gv in fused.functions if gv.name_hint.endswith(PREPACKED_SUFFIX))
        report.update({"kernels": total, "kernels_tuned": applied, "kernels_with_repacked_weights": repacked})
        if options.tune_trials > 0 and applied == 0:
            notes.append(f"tuning ran {options.tune_trials} trials but produced no schedule; the module is untuned")
        elif applied == 0:
            notes.append("untuned: no MetaSchedule record for these kernels (tridesign tune, or --tune N)")
        elif applied < total:
            notes.append(f"{applied} of {total} kernels use tuned schedules; the rest use TVM's defaults")
        start = time.perf_counter()
        executable = tvm.compile(finish(fused, target), target)
        report["build_s"] = round(time.perf_counter() - start, 3)
        module_name, export_notes = export(executable, spec, out_dir)
        notes += export_notes
        files = [module_name, TVM_IO_FILE]
        if has_records(db_dir):  # the records this build saw, so it can be reproduced from the artifact
            files += copy_database(db_dir, out_dir / TUNING_DIR, relative_to=out_dir)
        io = {"target": spec.name, "module": module_name, "inputs": front.io["inputs"], "outputs": front.io["outputs"]}
        (out_dir / TVM_IO_FILE).write_text(json.dumps(io, indent=2))
        return CompileResult(
            files=files,
            target={"name": spec.name, "tvm": spec.tvm_json(), "cross_compiler": spec.cross_compiler},
            tuned=applied > 0,
            tuning=report,
            notes=notes,
            sparse_layers=list(front.rewrites.sparse_layers),
            fixed_inputs=front.io["inputs"],
        )

    def load(self, artifact_dir: Path) -> TvmSession:
        return TvmSession(Path(artifact_dir))

    def profile_layers(self, artifact_dir: Path, inputs: dict[str, np.ndarray], repeat: int) -> list[LayerTiming]:
        """Time every kernel call of the VM through its instrument hook (before/after each call).

        A kernel called at several places (a repeated residual block) is reported per call site, so
        the table shows where in the network time goes, not just which code is slow.
        """
        session = TvmSession(Path(artifact_dir))
        args = session.arguments(inputs)
        samples: dict[str, list[float]] = {}
        state: dict[str, Any] = {"start": 0.0, "seen": {}}

        def instrument(func: Any, symbol: str, before_run: bool, ret: Any, *call_args: Any) -> int:
            if symbol.startswith("vm.builtin."):
                return 0
            if before_run:
                session.device.sync()
                state["start"] = time.perf_counter()
                return 0
            session.device.sync()  # GPU kernels launch asynchronously: time them to completion
            elapsed = time.perf_counter() - state["start"]
            count = state["seen"].get(symbol, 0)
            state["seen"][symbol] = count + 1
            site = symbol if count == 0 else f"{symbol}#{count}"
            samples.setdefault(site, []).append(elapsed)
            return 0

        session.vm["main"](*args)  # warm-up outside the measurement
        session.vm.set_instrument(instrument)
        for _ in range(max(1, repeat)):
            state["seen"] = {}
            session.vm["main"](*args)
        session.vm.set_instrument(None)
        timings = [
            LayerTiming(name=site, op_type=kernel_op_type(site.split("#")[0]), ms=float(np.median(t)) * 1e3)
            for site, t in samples.items()
        ]
        return sorted(timings, key=lambda t: t.ms, reverse=True)
