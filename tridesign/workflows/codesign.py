"""`tridesign codesign`: the joint data × model × circuit search, with accuracy on the Pareto front.

The sampler (Optuna) proposes the costly knobs — data sparsity and model sparsity — and each
proposal is measured (`codesign_eval.evaluate`: the real pruned/quantized model, compiled, run on
the held-apart data, with the data sparsity the policies produced); the circuit axis, milliseconds
a point, is then simulated exhaustively for it. Every (data, model, circuit) triple is a point of
`points.jsonl`; `pareto.json` keeps those no other point beats on accuracy, latency, energy per
input frame and area at once.

Search: the full grid (every point queued in the Optuna study) when the costly space fits the budget, otherwise
NSGA-II (or multi-objective TPE with `--sampler tpe`); the sampler sees, per proposal, accuracy and
the best latency and energy any circuit point reached with it. `--budget N` counts distinct
(data, model) evaluations — a proposal already measured is answered from the study, not
re-measured — and `--time-budget S` stops proposing after S seconds (running evaluations finish).

OUT_DIR is the study's home and is resumable: `study.db` (Optuna's SQLite storage) is the one
record of what was measured (each trial keeps its measurements), `points.jsonl`, `pareto.json`
and the report are rewritten from it after every evaluation (atomically), and a run interrupted
at any moment continues where it stopped when the same command is given again. `codesign.json`
fingerprints the search (source, task, data, arch, space); another search is refused in that
folder. A dense baseline (no data sparsity, dense float model, the arch as given) is measured
first: `energy_vs_dense` and the chosen point are relative to it.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tridesign.atomic import check_writable_parent, write_text_atomic
from tridesign.errors import UsageError
from tridesign.hwsim.pareto import pareto_front
from tridesign.hwsim.spec import load_spec
from tridesign.workflows.codesign_eval import (
    TASKS, Context, Labelled, evaluate, find_sequences, normalize, point_key,
)
from tridesign.workflows.codesign_space import DENSE, NO_DROP, SearchSpace, circuit_system, load_space

SAMPLERS = ("auto", "grid", "nsga2", "tpe")
EXECUTORS = ("local", "ray")
STUDY = "codesign"
MINIMIZE = ("latency_ms", "energy_per_frame", "area_mm2")
MAXIMIZE = ("accuracy",)
MAX_SPACE_POINTS = 100_000  # the space is enumerated once (resume, dedup): refuse one that would not fit
MAX_REPEATS = 200  # proposals in a row that were all measured already: the sampler has converged


@dataclass(frozen=True)
class CodesignJob:
    source: str
    task: str
    arch: str = "tridesign-alveo"
    data: Path | None = None
    space: Path | None = None
    budget: int | None = None
    time_budget: float | None = None
    executor: str = "local"
    workers: int = 1
    sampler: str = "auto"
    seed: int = 0
    backend: str = "ort"
    config: str | None = None
    tolerance: float = 0.02  # accuracy the chosen point may give up against the dense baseline

    def validate(self) -> CodesignJob:
        from tridesign.compiler.sparsity.recovery import TASK_DATA

        if self.task not in TASKS:
            raise UsageError(f"--task must be video or classification, got {self.task!r}")
        if self.source not in TASK_DATA:
            raise UsageError(f"{self.source}: codesign prunes and recovers a registered model with task data "
                             f"({', '.join(sorted(TASK_DATA))})")
        if (self.task == "video") != (self.source == "qdtrack_center"):
            raise UsageError(f"{self.source} is not a {self.task} model here (video: qdtrack_center; "
                             "classification: resnet20_digits)")
        if self.task == "video" and self.data is None:
            raise UsageError("--task video needs --data DIR: held-apart MOT sequences (`tridesign videos synth -o DIR --seed 7`; "
                             "the detector trains on seeds >= 1000)")
        for name, value, low in (("--budget", self.budget, 1), ("--workers", self.workers, 1)):
            if value is not None and value < low:
                raise UsageError(f"{name} must be at least {low}, got {value}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"--time-budget must be a positive number of seconds, got {self.time_budget}")
        if self.executor not in EXECUTORS:
            raise UsageError(f"--executor must be local or ray, got {self.executor!r}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.backend not in ("ort", "tvm"):
            raise UsageError(f"--backend must be ort or tvm, got {self.backend!r}")
        if not 0 <= self.tolerance < 1:
            raise UsageError(f"--tolerance must lie in [0, 1), got {self.tolerance}")
        return self

    @property
    def model_config(self) -> str:
        return self.config or ("track" if self.task == "video" else "tiny")


def baseline_point(space: SearchSpace, task: str) -> dict[str, Any]:
    """Dense: every frame and patch, the dense float model."""
    point = {"frame_drop": NO_DROP, "patch_drop": 0.0, "patch_px": space.data.patch_px[0],
             "prune": DENSE, "int8": False, "recovery_steps": 0}
    return normalize(point, task)


def distinct_points(space: SearchSpace, task: str) -> list[dict[str, Any]]:
    """One proposal per different (data, model) point of the space (dense ignores recovery steps)."""
    choices = space.choices(task)
    count = math.prod(len(v) for v in choices.values())
    if count > MAX_SPACE_POINTS:
        raise UsageError(f"the space holds {count:,} (data, model) points, each trained, compiled and measured: "
                         f"more than {MAX_SPACE_POINTS:,}; shorten its lists")
    points: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*choices.values()):
        params = dict(zip(choices, values))
        points.setdefault(point_key(normalize(params, task)), params)
    return list(points.values())


def run_codesign(job: CodesignJob, out: Path, report: Path | None = None,
                 on_progress: Callable[[int, int | None, str], object] | None = None) -> dict[str, Any]:
    """Run (or resume) the search in OUT; return the summary (also written as OUT/summary.json)."""
    import optuna

    job.validate()
    out = Path(out)
    system = load_spec(job.arch)
    space = load_space(job.space, job.task, system)
    sequences = find_sequences(job.data) if job.task == "video" else ()
    labelled = Labelled(Path(job.data) if job.data is not None else None)
    if job.task == "classification" and labelled.path is not None and not labelled.path.is_file():
        raise UsageError(f"--data {labelled.path}: no such file (classification takes an .npz with arrays x and y)")
    ctx = Context(job.task, job.source, job.model_config, job.backend, system, tuple(space.circuit.points()),
                  out / "runs", sequences, labelled)
    if report is not None:
        check_writable_parent(Path(report))
    grid = distinct_points(space, job.task)
    _claim(out, job, space, system)
    total = len(grid)
    budget = min(job.budget or total, total)
    sampler_name = job.sampler if job.sampler != "auto" else ("grid" if budget >= total else "nsga2")
    if sampler_name != "grid" and job.budget is None and job.time_budget is None:
        raise UsageError(f"the space holds {total} (data, model) points: give --budget N or --time-budget S for --sampler {sampler_name}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True,
        directions=["maximize", "minimize", "minimize"], sampler=_sampler(sampler_name, job, budget),
    )
    _fail_interrupted(study)
    baseline = _baseline(ctx, space, job, out)
    tell = _Teller(study, job.task)
    started = time.perf_counter()
    tick = on_progress or (lambda done, total_, label: None)
    tick(tell.measured, budget, "resuming" if tell.measured else "starting")
    with _Pool(job) as pool:
        pending: dict[futures.Future, tuple[str, list[Any]]] = {}
        repeats = 0
        while True:
            room = tell.measured + len(pending) < budget and repeats < MAX_REPEATS
            in_time = job.time_budget is None or time.perf_counter() - started < job.time_budget
            if room and in_time and len(pending) < job.workers:
                if sampler_name == "grid":  # exhaustive: queue the next point not measured nor running
                    busy = set(tell.results) | set(tell.failed) | {k for k, _ in pending.values()}
                    study.enqueue_trial(next(p for p in grid if point_key(normalize(p, job.task)) not in busy))
                trial = study.ask()
                point = normalize({k: trial.suggest_categorical(k, v) for k, v in space.choices(job.task).items()}, job.task)
                key = point_key(point)
                if key in tell.results or key in tell.failed:
                    tell.answer(trial, tell.results.get(key), reused=True, error=tell.failed.get(key))
                    repeats += 1
                    continue
                running = next((f for f, (k, _) in pending.items() if k == key), None)
                if running is not None:
                    pending[running][1].append(trial)
                    continue
                repeats = 0
                pending[pool.submit(ctx, point)] = (key, [trial])
                continue
            if not pending:
                break
            done, _ = futures.wait(list(pending), return_when=futures.FIRST_COMPLETED)
            for future in done:
                key, trials = pending.pop(future)
                result, error = _outcome(future)
                for i, trial in enumerate(trials):
                    tell.answer(trial, result, reused=i > 0, error=error)
                write_outputs(study, baseline, out, None)
                tick(tell.measured, budget, f"failed: {error}" if error else _label(result["point"]))
    summary = write_outputs(study, baseline, out, report or out / "report.html", job=job, sampler=sampler_name,
                            budget=budget, total=total, stopped=_stop_reason(tell, budget, repeats, job, started))
    return summary


def _outcome(future: futures.Future) -> tuple[dict[str, Any] | None, str | None]:
    """The evaluation's result, or the one-line reason it failed (a point the toolchain refuses, e.g.
    an artifact that fails verification, is a failed trial; the search goes on)."""
    from tridesign.errors import TridesignError

    try:
        return future.result(), None
    except TridesignError as err:
        return None, str(err)


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _stop_reason(tell: _Teller, budget: int, repeats: int, job: CodesignJob, started: float) -> str:
    if tell.measured >= budget:
        return f"budget: {tell.measured} (data, model) points measured"
    if repeats >= MAX_REPEATS:
        return f"the sampler proposed only measured points {MAX_REPEATS} times in a row"
    return f"time budget of {job.time_budget:g} s reached after {time.perf_counter() - started:.0f} s"


def _sampler(name: str, job: CodesignJob, budget: int):
    import optuna

    if name == "grid":  # every trial is a queued grid point; the sampler never draws
        return optuna.samplers.RandomSampler(seed=job.seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=job.seed, multivariate=True, n_startup_trials=max(2, budget // 4))
    return optuna.samplers.NSGAIISampler(seed=job.seed, population_size=max(4, min(50, budget // 3)))


def _fingerprint(job: CodesignJob, space: SearchSpace, system) -> dict[str, Any]:
    return {"version": 1, "source": job.source, "task": job.task, "config": job.model_config, "backend": job.backend,
            "data": str(Path(job.data).resolve()) if job.data is not None else None,
            "arch": system.model_dump(mode="json"), "space": space.model_dump(mode="json")}


def _claim(out: Path, job: CodesignJob, space: SearchSpace, system) -> None:
    """Make OUT the home of this search, or check that it already is (a resume)."""
    marker = out / "codesign.json"
    fingerprint = _fingerprint(job, space, system)
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{marker} is damaged: use another -o") from None
        differs = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
        if differs:
            raise UsageError(f"{out} holds another search (its {', '.join(differs)} differ): use another -o, "
                             "or the same arguments to resume it")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a codesign output: use a new or empty -o")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json.dumps(fingerprint, indent=2) + "\n")


def _fail_interrupted(study) -> None:
    """Trials left RUNNING by an interrupted run are failed, so the sampler proposes them again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _baseline(ctx: Context, space: SearchSpace, job: CodesignJob, out: Path) -> dict[str, Any]:
    path = out / "baseline.json"
    if path.is_file():
        return json.loads(path.read_text())
    baseline = evaluate(replace(ctx, circuits=({},)), baseline_point(space, job.task))
    write_text_atomic(path, json.dumps(baseline, indent=2) + "\n")
    return baseline


class _Teller:
    """Tells the study each measured proposal; the study's trials are the one record of results."""

    def __init__(self, study, task: str):
        from optuna.trial import TrialState

        self.study = study
        self.task = task
        self.results: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if trial.user_attrs.get("reused"):
                continue
            if trial.user_attrs.get("result") is not None:
                self.results[trial.user_attrs["result"]["key"]] = trial.user_attrs["result"]
            elif trial.user_attrs.get("error") is not None:
                self.failed[trial.user_attrs["key"]] = trial.user_attrs["error"]

    @property
    def measured(self) -> int:
        """(data, model) points evaluated, failed ones included: they cost the budget too."""
        return len(self.results) + len(self.failed)

    def answer(self, trial, result: dict[str, Any] | None, reused: bool, error: str | None = None) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("reused", reused)
        if error is not None:
            key = point_key(normalize(trial.params, self.task))
            trial.set_user_attr("key", key)
            trial.set_user_attr("point", normalize(trial.params, self.task))
            trial.set_user_attr("error", error)
            self.study.tell(trial, state=TrialState.FAIL)
            self.failed.setdefault(key, error)
            return
        trial.set_user_attr("result", result)
        best_latency = min(c["latency_ms"] for c in result["circuits"])
        best_energy = min(c["energy_per_frame"] for c in result["circuits"])
        self.study.tell(trial, [result["accuracy"], best_latency, best_energy])
        self.results.setdefault(result["key"], result)


class _Pool:
    """Runs evaluations in-process (one worker), in local processes, or as Ray tasks; futures all."""

    def __init__(self, job: CodesignJob):
        self.job = job
        self.pool = None
        self.remote = None

    def __enter__(self) -> _Pool:
        if self.job.executor == "ray":
            try:
                import ray
            except ImportError:
                raise UsageError("--executor ray needs ray: pip install 'tridesign[distributed]'") from None
            if not ray.is_initialized():
                ray.init(num_cpus=self.job.workers, include_dashboard=False, log_to_driver=False)
            self.remote = ray.remote(num_cpus=1)(evaluate)
        elif self.job.workers > 1:
            self.pool = futures.ProcessPoolExecutor(self.job.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def submit(self, ctx: Context, point: dict[str, Any]) -> futures.Future:
        if self.remote is not None:
            return self.remote.remote(ctx, point).future()
        if self.pool is not None:
            return self.pool.submit(evaluate, ctx, point)
        future: futures.Future = futures.Future()
        try:
            future.set_result(evaluate(ctx, point))
        except Exception as err:  # noqa: BLE001 - handed over like a worker's: _outcome keeps the refusals, raises the rest
            future.set_exception(err)
        return future

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)


def points_of(study, baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured (data, model) point crossed with its simulated circuit points, one row each."""
    from optuna.trial import TrialState

    reference = baseline["circuits"][0]
    base_point = baseline["point"]
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result = trial.user_attrs.get("result")
        if result is None or trial.user_attrs.get("reused"):
            continue
        point = result["point"]
        for sim in result["circuits"]:
            changed = [axis for axis, differs in (
                ("data", any(point.get(k) != base_point.get(k) for k in ("frame_drop", "patch_drop", "patch_px"))),
                ("model", any(point[k] != base_point[k] for k in ("prune", "int8", "recovery_steps"))),
                ("circuit", sim["circuit_changed"]),
            ) if differs]
            rows.append({
                "trial": trial.number, "key": result["key"],
                "data": {k: point[k] for k in ("frame_drop", "patch_drop", "patch_px") if k in point},
                "model": {k: point[k] for k in ("prune", "int8", "recovery_steps")},
                "circuit": sim["circuit"], "dataflow": sim["dataflow"],
                "accuracy": result["accuracy"], "metrics": result["metrics"], "measured": result["measured"],
                **{k: sim[k] for k in ("latency_ms", "frame_interval_ms", "effective_fps", "energy_per_frame", "energy_unit", "area_mm2")},
                "energy_vs_dense": reference["energy_per_frame"] / sim["energy_per_frame"] if sim["energy_per_frame"] else None,
                "changed": "+".join(changed) or "none",
            })
    return rows


def choose(rows: list[dict[str, Any]], front: list[int], baseline: dict[str, Any], tolerance: float) -> int | None:
    """The front's lowest-energy point within `tolerance` accuracy of dense (else its most accurate)."""
    if not front:
        return None
    floor = baseline["accuracy"] - tolerance
    near = [i for i in front if rows[i]["accuracy"] >= floor]
    if near:
        return min(near, key=lambda i: (rows[i]["energy_per_frame"], rows[i]["latency_ms"]))
    return max(front, key=lambda i: rows[i]["accuracy"])


def write_outputs(study, baseline: dict[str, Any], out: Path, report: Path | None, job: CodesignJob | None = None,
                  **run: Any) -> dict[str, Any]:
    """points.jsonl and pareto.json (always); the report, chosen arch and summary at the end (`job`)."""
    rows = points_of(study, baseline)
    front = pareto_front(rows, MINIMIZE, MAXIMIZE)
    write_text_atomic(out / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    pareto = {"objectives": {"maximize": list(MAXIMIZE), "minimize": list(MINIMIZE)},
              "baseline": _baseline_row(baseline), "points": [rows[i] for i in front]}
    write_text_atomic(out / "pareto.json", json.dumps(pareto, indent=2) + "\n")
    if job is None:
        return pareto
    from tridesign.workflows.codesign_report import reproduce, write_report

    chosen = choose(rows, front, baseline, job.tolerance)
    chosen_row = rows[chosen] if chosen is not None else None
    files = ["codesign.json", "study.db", "baseline.json", "points.jsonl", "pareto.json"]
    commands = []
    if chosen_row is not None:
        system = circuit_system(load_spec(job.arch), chosen_row["circuit"])
        write_text_atomic(out / "chosen_arch.yaml", yaml.safe_dump(system.model_dump(mode="json"), sort_keys=False))
        files.append("chosen_arch.yaml")
        sequences = find_sequences(job.data) if job.task == "video" else ()
        commands = reproduce(job.source, job.model_config, job.backend, sequences, chosen_row, out)
    summary = {
        "kind": "tridesign.codesign", "version": 1, "source": job.source, "task": job.task, "arch": job.arch,
        "job": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()},
        "sampler": run["sampler"], "budget": run["budget"], "space_points": run["total"], "stopped": run["stopped"],
        "measured_points": len({r["key"] for r in rows}), "points": len(rows), "pareto": len(front),
        "baseline": _baseline_row(baseline), "chosen": chosen_row, "commands": commands, "files": files,
        "failed": _failures(study),
    }
    if report is not None:
        write_report(report, rows, front, chosen, summary)
        summary["report"] = str(report)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _failures(study) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    return [{"point": t.user_attrs["point"], "error": t.user_attrs["error"]}
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if "error" in t.user_attrs and not t.user_attrs.get("reused")]


def _baseline_row(baseline: dict[str, Any]) -> dict[str, Any]:
    sim = baseline["circuits"][0]
    return {"point": baseline["point"], "accuracy": baseline["accuracy"], "metrics": baseline["metrics"],
            **{k: sim[k] for k in ("latency_ms", "effective_fps", "energy_per_frame", "energy_unit", "area_mm2")}}
