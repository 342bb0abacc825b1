"""Pareto fronts and their hypervolume, over any mix of objectives to minimise and to maximise.

`sweep` keeps the latency/energy/area front of a hardware sweep; `codesign` adds accuracy (to
maximise) and compares fronts by hypervolume. The hypervolume is moocore's (an exact algorithm
maintained by the multi-objective optimisation community), computed on objectives turned into
minimisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _losses(rows: Sequence[dict[str, Any]], minimize: Sequence[str], maximize: Sequence[str]) -> np.ndarray:
    values = [[float(r[k]) for k in minimize] + [-float(r[k]) for k in maximize] for r in rows]
    return np.asarray(values, float).reshape(len(rows), len(minimize) + len(maximize))


def pareto_front(rows: Sequence[dict[str, Any]], minimize: Sequence[str], maximize: Sequence[str] = ()) -> list[int]:
    """Indices of the rows no other row dominates (at least as good on every key, better on one)."""
    loss = _losses(rows, minimize, maximize)
    front = []
    for i in range(len(loss)):
        no_worse = np.all(loss <= loss[i], axis=1)
        better = np.any(loss < loss[i], axis=1)
        if not np.any(no_worse & better):
            front.append(i)
    return front


def hypervolume(rows: Sequence[dict[str, Any]], reference: dict[str, float], minimize: Sequence[str],
                maximize: Sequence[str] = ()) -> float:
    """The volume the rows dominate up to `reference` (a value per key; rows beyond it add nothing)."""
    import moocore

    if not rows:
        return 0.0
    loss = _losses(rows, minimize, maximize)
    ref = np.array([reference[k] for k in minimize] + [-reference[k] for k in maximize], float)
    inside = loss[np.all(loss < ref, axis=1)]
    return float(moocore.hypervolume(inside, ref=ref)) if len(inside) else 0.0
