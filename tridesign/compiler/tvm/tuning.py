"""MetaSchedule tuning with a persistent, shared database.

One JSON database per target (`~/.cache/tridesign/tuning/<target-key>/`): records are keyed by the
structural hash of each fused kernel, so a model that shares layer shapes with one tuned before
starts from those schedules, and `compile` picks them up without tuning again. MetaSchedule appends
every measured record to the database files as it goes, so an interrupted run keeps what it
measured and the next run (same --db) resumes from there. Measuring runs locally, or on a board
through a TVM RPC tracker (`RemoteRunner`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

from tridesign.compiler.remote import require_board
from tridesign.compiler.tvm.frontend import front_half, handwritten_kernels
from tridesign.compiler.tvm.rewrites import RewriteContext
from tridesign.atomic import file_lock
from tridesign.errors import TridesignError
from tridesign.board.tvm_module import configure_tvm_runtime
from tridesign.targets import TargetSpec, get_target

# Building a candidate on 2 busy cores (the cost model and runner share them) takes far longer
# than MetaSchedule's default 30 s; a timed-out build is a wasted trial, not a slow schedule.
BUILDER_TIMEOUT_S = 120.0
RUNNER_TIMEOUT_S = 60.0
DB_FILES = ("database_workload.json", "database_tuning_record.json", "conv_tiles.json")  # the last: tridesign.kernels.conv_tiles


def build_candidate(mod: Any, target: Any, _params: Any) -> Any:
    """Build one measured candidate in a builder worker (replaces MetaSchedule's default_build).

    The default imports `tvm.s_tir.tensor_intrin` in every fresh worker, which parses every
    tensor-core/VNNI intrinsic in TVMScript: minutes on 2 loaded cores, so every build timed out.
    Candidates arrive already scheduled (tensorization happens in the search), so lowering them
    needs no intrinsic registry.
    """
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return build(mod, target=target)


@dataclass(frozen=True)
class RemoteRunner:
    """Measure candidates on a board: its TVM RPC server registered with a tracker under `key`."""

    tracker_host: str
    tracker_port: int
    key: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tridesign" / "tuning"


def default_db_dir(spec: TargetSpec) -> Path:
    """Where a target's records live unless --db says otherwise; shared by every model."""
    return cache_root() / spec.key()


def open_database(db_dir: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    try:
        db_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TridesignError(f"cannot create tuning database directory {db_dir}: {err.strerror}") from None
    return ms.database.JSONDatabase(work_dir=str(db_dir), module_equality="structural")


def database_lock(db_dir: Path, shared: bool = False, quiet: bool = False) -> ContextManager[None]:
    """The database's lock: a tuning run holds it exclusively (MetaSchedule appends records that
    point at workloads by line number, so two runs appending at once could cross them), a compile
    reading the records shares it. A run that has to wait says so on stderr."""
    from tridesign.kernels.conv_tiles import LOCK_FILE  # the tile book locks the same file
    from tridesign.progress import stderr

    def waiting() -> None:
        if not quiet:
            stderr.print(f"[yellow]note:[/] waiting for another tuning run on {db_dir} to finish", highlight=False)

    return file_lock(Path(db_dir) / LOCK_FILE, shared=shared, on_wait=waiting)


def has_records(db_dir: Path) -> bool:
    record = db_dir / DB_FILES[1]
    return record.exists() and record.stat().st_size > 0


def apply_database(fused_mod: Any, target: Any, db_dir: Path) -> tuple[Any, int, int]:
    """Replace fused kernels by their best tuned schedule; returns (module, kernels tuned, kernels)."""
    from tvm import relax, tirx

    def kernels(mod: Any) -> list[Any]:
        """MetaSchedule's kernels: the hand-written ones are scheduled by construction."""
        handwritten = handwritten_kernels(mod)
        return [f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc) and gv not in handwritten]

    total = len(kernels(fused_mod))
    if not has_records(db_dir):
        return fused_mod, 0, total
    with database_lock(db_dir, shared=True), target, open_database(db_dir):
        applied_mod = relax.transform.MetaScheduleApplyDatabase()(fused_mod)
    tuned = sum(1 for f in kernels(applied_mod) if f.attrs is not None and f.attrs.get("tirx.is_scheduled", False))
    return fold_weight_layouts(applied_mod, target), tuned, total


def fold_weight_layouts(mod: Any, target: Any) -> Any:
    """Repack weights into the layouts tuned schedules chose, at compile time.

    A schedule with a rewritten weight layout reads `W'` = transform(`W`); splitting the transform
    into its own kernel makes it a call on a constant, which FoldConstant evaluates once, so the
    deployed module takes the same inputs as the ONNX model and repacks nothing per call. The
    emptied transform kernels are then dropped from the module.
    """
    import tvm
    from tvm import relax

    # Hand-written kernels have no layout to split and the splitting pass rejects them: they sit
    # out and come back unchanged.
    handwritten = handwritten_kernels(mod)
    passes = [
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
    ]
    with target:
        out = tvm.transform.Sequential(passes)(tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv not in handwritten}))
        for gv, f in handwritten.items():
            out[gv] = f
        return relax.transform.DeadCodeElimination(["main"])(out)


def copy_database(db_dir: Path, dest: Path, relative_to: Path) -> list[str]:
    """Copy the database into the artifact, so the build can be reproduced from the artifact alone."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in DB_FILES:
        if (db_dir / name).exists():
            shutil.copy2(db_dir / name, dest / name)
            copied.append(str((dest / name).relative_to(relative_to)))
    return copied


def _runner(remote: RemoteRunner | None) -> Any:
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20, enable_cpu_cache_flush=False)
    if remote is None:
        return ms.runner.LocalRunner(timeout_sec=RUNNER_TIMEOUT_S, evaluator_config=config)
    rpc = ms.runner.RPCConfig(
        tracker_host=remote.tracker_host,
        tracker_port=remote.tracker_port,
        tracker_key=remote.key,
        session_timeout_sec=int(RUNNER_TIMEOUT_S),
    )
    return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=config)


class TuningProgress:
    """Trials done and the best whole-model estimate so far (sum of best kernel times × calls)."""

    def __init__(self, trials: int, weights: list[int], quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.weights = weights
        self.best: dict[int, float] = {}
        self.progress = Progress(
            TextColumn("tuning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self.task = self.progress.add_task("tuning", total=trials, best="best: not measured yet")

    def __enter__(self) -> "TuningProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def record(self, task_id: int, run_secs: list[list[float]]) -> None:
        times = [sum(s) / len(s) for s in run_secs if s]
        if times:
            self.best[task_id] = min(self.best.get(task_id, float("inf")), min(times))
        total_ms = sum(self.best[i] * self.weights[i] for i in self.best) * 1e3
        label = f"best: {total_ms:.3f} ms over {len(self.best)}/{len(self.weights)} kernels"
        self.progress.update(self.task, advance=len(run_secs), best=label)

    def best_ms(self) -> dict[str, float]:
        return {str(i): round(t * 1e3, 4) for i, t in sorted(self.best.items())}

    def callback(self) -> Any:
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        owner = self

        @derived_object
        class _Progress(PyMeasureCallback):
            def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):  # type: ignore[no-untyped-def]
                secs = [
                    [float(x) for x in r.run_secs] if r.error_msg is None and r.run_secs else []
                    for r in runner_results
                ]
                owner.record(int(task_id), secs)

        return _Progress()


def tune(
    fused_mod: Any,
    spec: TargetSpec,
    trials: int,
    db_dir: Path,
    remote: RemoteRunner | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Tune the fused kernels of a module for `trials` measurements in all, appending to db_dir.

    Trials are spread over the kernels by MetaSchedule's gradient task scheduler, in batches of
    8-64 candidates per kernel; a budget below (kernels x 8) leaves some kernels untuned, which the
    returned report and the manifest say.

    A rich progress bar on stderr shows trials done and the best latency so far (`quiet` hides it).
    """
    from tvm.s_tir import meta_schedule as ms

    configure_tvm_runtime()
    if trials <= 0:
        raise TridesignError("the number of tuning trials must be positive")
    if not spec.runs_here and remote is None:
        raise TridesignError(
            f"target {spec.name} cannot be measured on this machine; tune through a tracker "
            "(--tracker HOST:PORT --key KEY) or reuse a database tuned on the board (--db)"
        )
    if remote is not None:
        require_board((remote.tracker_host, remote.tracker_port), remote.key)
    target = spec.tvm_target()
    tasks = ms.relax_integration.extract_tasks(fused_mod, target)
    # hand-written kernels (no root block) are scheduled by construction: no trials for them
    tasks = [t for t in tasks if not t.mod.attrs.get("tirx.is_scheduled", False) and not handwritten_kernels(t.mod)]
    if not tasks:
        return {"tasks": 0, "tuning_s": 0.0, "best_ms": {}}
    tasks = heaviest_first(tasks)
    with database_lock(db_dir, quiet=quiet):
        return _tune_tasks(tasks, spec, trials, db_dir, remote, quiet)


def _tune_tasks(tasks: list[Any], spec: TargetSpec, trials: int, db_dir: Path, remote: RemoteRunner | None,
                quiet: bool) -> dict[str, Any]:
    """The tuning itself, under the database's lock (`tune`)."""
    from tvm.s_tir import meta_schedule as ms

    database = open_database(db_dir)
    before = len(database)
    # MetaSchedule logs every task to files under db_dir/logs, and echoes INFO lines to stdout,
    # which would break `--json`; the console keeps warnings only, the files keep everything.
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_logger.setLevel(logging.WARNING)
    # MetaSchedule rebuilds its logging config from this logger's handlers by name; a second tuning
    # run in one process finds the previous run's unnamed handler there and fails on it.
    for handler in [h for h in ms_logger.handlers if h.get_name() is None]:
        ms_logger.removeHandler(handler)
        handler.close()
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(db_dir), num_threads=spec.host.get("num-cores", 1) if spec.runs_here else "physical"
    )
    bar = TuningProgress(trials, [t.weight for t in tasks], quiet=quiet)
    start = time.perf_counter()
    with bar:
        ms.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=str(db_dir),
            max_trials_global=trials,
            max_trials_per_task=max(trials // len(contexts), min(trials, 64)),
            num_trials_per_iter=min(64, max(8, trials // max(1, len(contexts)))),
            builder=ms.builder.LocalBuilder(timeout_sec=BUILDER_TIMEOUT_S, f_build=build_candidate),
            runner=_runner(remote),
            database=database,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), bar.callback()],
        )
    elapsed = time.perf_counter() - start
    return {
        "tasks": len(contexts),
        "tuning_s": round(elapsed, 1),
        "records_added": len(database) - before,
        "best_ms": bar.best_ms(),
    }


def heaviest_first(tasks: list[Any]) -> list[Any]:
    """Tasks by work (FLOPs × calls), most first, ties by name.

    MetaSchedule's task scheduler spends its first rounds on the tasks in the order given; a budget
    smaller than a round per task tunes only the first ones. Extraction order is not stable across
    processes, so a small `--trials` tuned a different kernel each run; now it tunes the heaviest.
    """
    from tvm.s_tir.analysis import estimate_tir_flops

    return sorted(tasks, key=lambda t: (-estimate_tir_flops(t.dispatched[0]) * t.weight, t.task_name))


def tune_model(
    model: Any,
    target: str,
    trials: int,
    db_dir: Path | None = None,
    batch: int = 1,
    remote: RemoteRunner | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """`tridesign tune`: tune a (normalized) ONNX model's kernels into the target's database.

    Nothing is built: `compile` with the same target (and --tuning-db) applies the records. The
    model must be the graph `compile` will see (tridesign.compiler.pipeline.resolve_source), or the
    kernels' structural hashes differ and nothing is reused.
    """
    spec = get_target(target)
    db_dir = Path(db_dir) if db_dir else default_db_dir(spec)
    # dense_tuned: `compile` after this run finds records and applies the tuned sparse policy too
    context = RewriteContext(
        spec.tvm_target(), model, db_dir, measure_tiles=spec.runs_here and remote is None, dense_tuned=True
    )
    front = front_half(context, batch)
    rewrites = front.rewrites
    notes = list(rewrites.notes)
    kernel_report = {
        **rewrites.counts,
        "sparse_kernel_layers": sum(1 for layer in rewrites.sparse_layers if layer["sparse"]),
        "dense_conv_tiling_s": round(front.rewrite_s, 1),
    }
    if remote is not None and kernel_report.get("dense_convs"):
        notes.append("convolution tiles are measured on this machine only: through a tracker the default tiles are used")
    report = {**tune(front.fused, spec, trials, db_dir, remote=remote, quiet=quiet), **kernel_report, "notes": notes}
    _, applied, total = apply_database(front.fused, context.target, db_dir)
    return {
        "target": spec.name,
        "database": str(db_dir),
        "trials": trials,
        "kernels": total,
        "kernels_tuned": applied,
        **report,
    }
