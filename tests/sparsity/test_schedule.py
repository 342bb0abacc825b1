"""Iterative pruning: cubic ramp, masks only grow, the final target is exact."""

from __future__ import annotations

import pytest

from tridesign.compiler.sparsity.schedule import cubic_ramp, prune_iterative
from tridesign.errors import UsageError
from tridesign.sparsity_plan import parse_method


def test_cubic_ramp_ends_at_target_and_rises() -> None:
    ramp = cubic_ramp(0.9, 4)
    assert ramp[-1] == pytest.approx(0.9)
    assert all(a < b for a, b in zip(ramp, ramp[1:]))


def test_iterative_reaches_target(resnet, example) -> None:
    report, history = prune_iterative(resnet, parse_method("unstructured:0.8"), example, "resnet20", rounds=2, steps_per_round=2)
    assert report.real_sparsity == pytest.approx(0.8, abs=1e-3)
    assert [round(h["sparsity"], 3) for h in history] == [0.7, 0.8]
    assert report.spec == "unstructured:0.8"


def test_iterative_refuses_structural_specs(resnet, example) -> None:
    with pytest.raises(UsageError):
        prune_iterative(resnet, parse_method("channel:0.5"), example, "resnet20")
