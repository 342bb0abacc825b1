"""Design-space exploration: arch parameters x dataflow x sparsity → Pareto front.

Every point is one `simulate` run. Points are independent, so they run in a local process pool or
as Ray tasks; the base workload is shipped once per worker (pool initializer, `ray.put`), and each
worker draws a sparsity setting's masks once (seeded, so every worker draws the same masks) and
reuses them for all points with that setting. The front keeps the points no other point beats on
latency, energy and area at once.
"""

from __future__ import annotations

import itertools
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tridesign.atomic import write_text_atomic
from tridesign.errors import UsageError
from tridesign.hwsim.pareto import pareto_front
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.sparsity import SparsitySetting, apply_sparsity
from tridesign.hwsim.spec import DeviceSpec, SystemSpec
from tridesign.hwsim.workload import Workload

OBJECTIVES = ("latency_ms", "energy_per_input_frame", "area_mm2")
MAX_POINTS = 200_000  # a grid is built in memory and every point simulated: refuse what would run for days
POINT_MS = 5.0  # a typical simulate() of a small network, for the estimate in the refusal


@dataclass(frozen=True)
class SweepPoint:
    overrides: dict[str, Any] = field(default_factory=dict)
    dataflow: str | None = None
    sparsity: SparsitySetting = SparsitySetting()


def grid(params: dict[str, list[Any]], dataflows: list[str | None], sparsities: list[SparsitySetting]) -> list[SweepPoint]:
    """The full cross product; parameter names must be DeviceSpec fields (or `sparsity.<field>`)."""
    known = set(DeviceSpec.model_fields) | {f"sparsity.{f}" for f in ("weight_skipping", "tile_skipping", "frame_skipping")}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UsageError(f"unknown sweep parameter(s) {', '.join(unknown)}")
    names = list(params)
    count = math.prod(len(params[n]) for n in names) * max(1, len(dataflows)) * max(1, len(sparsities))
    if count > MAX_POINTS:
        raise UsageError(f"the sweep has {count:,} points (at ~{POINT_MS:g} ms each about {count * POINT_MS / 3.6e6:.1f} h "
                         f"on one core), more than {MAX_POINTS:,}: narrow the --param lists")
    points = []
    for values in itertools.product(*(params[n] for n in names)):
        for flow, sp in itertools.product(dataflows or [None], sparsities or [SparsitySetting()]):
            points.append(SweepPoint(dict(zip(names, values)), flow, sp))
    return points


_WORKLOAD: Workload | None = None
_SYSTEM: SystemSpec | None = None
_SPARSE: dict[SparsitySetting, Workload] = {}


def _init(workload: Workload, system: SystemSpec) -> None:
    global _WORKLOAD, _SYSTEM
    _WORKLOAD, _SYSTEM = workload, system
    _SPARSE.clear()


def _evaluate(point: SweepPoint) -> dict[str, Any]:
    assert _WORKLOAD is not None and _SYSTEM is not None, "worker not initialised"
    if point.sparsity not in _SPARSE:
        base = _WORKLOAD
        _SPARSE[point.sparsity] = base if point.sparsity == SparsitySetting() else apply_sparsity(base, point.sparsity)
    system = _SYSTEM.with_device_overrides(point.overrides)
    result = simulate(_SPARSE[point.sparsity], system, point.dataflow)
    t = result.totals
    return {
        **point.overrides, "dataflow": result.dataflow, "sparsity": point.sparsity.label,
        **{k: t[k] for k in (*OBJECTIVES, "frame_interval_ms", "effective_fps", "util_effective", "dram_bytes")},
    }


def run_sweep(
    workload: Workload, system: SystemSpec, points: list[SweepPoint], executor: str = "local", workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every point (in order); `executor` is `local` (process pool), `serial` or `ray`."""
    tick = progress or (lambda _n: None)
    if executor == "serial" or (executor == "local" and workers <= 1):
        _init(workload, system)
        rows = []
        for p in points:
            rows.append(_evaluate(p))
            tick(1)
        return rows
    if executor == "local":
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(workload, system)) as pool:
            rows = []
            for row in pool.map(_evaluate, points, chunksize=max(1, len(points) // (4 * workers))):
                rows.append(row)
                tick(1)
            return rows
    if executor == "ray":
        return _run_ray(workload, system, points, tick)
    raise UsageError(f"unknown executor {executor!r}: use local, serial or ray")


def _run_ray(workload: Workload, system: SystemSpec, points: list[SweepPoint], tick: Callable[[int], None]) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs ray: pip install 'tridesign[distributed]'") from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)

    @ray.remote
    def evaluate(wl: Workload, sys_: SystemSpec, batch: list[SweepPoint]) -> list[dict[str, Any]]:
        _init(wl, sys_)
        return [_evaluate(p) for p in batch]

    wl_ref, sys_ref = ray.put(workload), ray.put(system)
    batches = [points[i::max(1, int(ray.cluster_resources().get("CPU", 1)))] for i in range(int(ray.cluster_resources().get("CPU", 1)))]
    batches = [b for b in batches if b]
    pending = {evaluate.remote(wl_ref, sys_ref, b): b for b in batches}
    by_point: dict[int, dict[str, Any]] = {}
    index = {id(p): i for i, p in enumerate(points)}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        batch = pending.pop(done[0])
        for p, row in zip(batch, ray.get(done[0])):
            by_point[index[id(p)]] = row
        tick(len(batch))
    return [by_point[i] for i in range(len(points))]


def sweep_front(rows: list[dict[str, Any]]) -> list[int]:
    """The points no other point beats on latency, energy and area at once."""
    return pareto_front(rows, OBJECTIVES)


def write_sweep(rows: list[dict[str, Any]], front: list[int], json_path: Path | None, html_path: Path | None,
                title: str) -> dict[str, Any]:
    """Write the JSON and/or HTML report (atomically) and return the JSON payload."""
    payload = {"title": title, "objectives": list(OBJECTIVES), "points": rows, "pareto": front}
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(payload, indent=2))
    if html_path is not None:
        import matplotlib

        from tridesign.hwsim.report import TEMPLATES, _png

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        sizes = [20 + 200 * r["area_mm2"] / max(x["area_mm2"] for x in rows) for r in rows]
        ax.scatter([r["latency_ms"] for r in rows], [r["energy_per_input_frame"] for r in rows], s=sizes, c="#bbb",
                   label="points (size = area)")
        ax.scatter([rows[i]["latency_ms"] for i in front], [rows[i]["energy_per_input_frame"] for i in front],
                   s=[sizes[i] for i in front], c="C3", label="Pareto front")
        ax.set(xscale="log", yscale="log", xlabel="latency ms", ylabel="energy / input frame", title=title)
        ax.legend(fontsize=7)
        columns = list(rows[0]) if rows else []
        html = TEMPLATES.get_template("sweep.html.j2").render(
            title=title, plot=_png(fig), columns=columns, rows=rows, front=set(front),
        )
        write_text_atomic(html_path, html)
    return payload

