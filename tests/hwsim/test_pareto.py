"""Pareto fronts and hypervolumes against hand counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tridesign.hwsim.pareto import hypervolume, pareto_front


def test_front_mixes_minimised_and_maximised_keys() -> None:
    rows = [{"acc": 0.9, "e": 2.0}, {"acc": 0.8, "e": 1.0}, {"acc": 0.8, "e": 1.5}, {"acc": 0.95, "e": 2.0}, {"acc": 0.95, "e": 2.0}]
    # 0 is beaten by 3 (as accurate or more, same energy); 2 by 1; the twins 3 and 4 both stay
    assert pareto_front(rows, ("e",), ("acc",)) == [1, 3, 4]


def test_hypervolume_of_a_staircase_is_its_area() -> None:
    rows = [{"acc": 0.9, "e": 2.0}, {"acc": 0.8, "e": 1.0}, {"acc": 0.5, "e": 5.0}]  # the last lies beyond the reference
    reference = {"acc": 0.6, "e": 3.0}
    # boxes over the reference: e in [1, 2) with acc up to 0.8, e in [2, 3) with acc up to 0.9
    assert hypervolume(rows, reference, ("e",), ("acc",)) == pytest.approx(1.0 * 0.2 + 1.0 * 0.3, rel=1e-12)


def test_hypervolume_in_four_dimensions_matches_a_grid_count() -> None:
    rng = np.random.default_rng(0)
    keys = ("a", "b", "c")
    rows = [{"acc": float(v[0]), **dict(zip(keys, map(float, v[1:])))} for v in rng.integers(1, 5, size=(6, 4))]
    reference = {"acc": 0.0, "a": 5.0, "b": 5.0, "c": 5.0}
    # count the unit cells of the integer grid that some row dominates (all coordinates are integers)
    cells = 0
    for acc, a, b, c in itertools.product(range(0, 5), range(1, 5), range(1, 5), range(1, 5)):
        cells += any(r["acc"] >= acc + 1 and r["a"] <= a and r["b"] <= b and r["c"] <= c for r in rows)
    assert hypervolume(rows, reference, keys, ("acc",)) == pytest.approx(cells, rel=1e-12)
