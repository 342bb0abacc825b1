"""Unstructured magnitude pruning, global and per layer: structure, numbers, effect."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.sparsity import annotate_exported, prune_torch
from tridesign.compiler.sparsity.prune_fns import global_masks, layer_mask
from tridesign.sparsity_plan import load_plan

from .conftest import export_check


def test_global_mask_is_exact_and_follows_magnitude() -> None:
    rng = np.random.default_rng(0)
    scores = {"a": rng.random((10, 10)), "b": rng.random((7, 3)) * 0.1}
    masks = global_masks(scores, 0.6)
    assert sum(m.sum() for m in masks.values()) == round(0.4 * 121)
    kept = np.concatenate([scores[n][masks[n]] for n in masks])
    dropped = np.concatenate([scores[n][~masks[n]] for n in masks])
    assert kept.min() >= dropped.max()
    # the small-magnitude layer loses more than the global ratio
    assert masks["b"].mean() < 0.4 < masks["a"].mean()


def test_layer_mask_ties_do_not_keep_extra() -> None:
    assert layer_mask(np.ones(10), 0.3).sum() == 7


@pytest.mark.parametrize("spec", ["unstructured:0.8", "unstructured:0.7:layer"])
def test_torch_pruning_reaches_target_and_export_matches(resnet, example, spec: str) -> None:
    report = prune_torch(resnet, load_plan(spec), example)
    assert len(report.records) == 22  # 19 3x3 convs, 2 shortcut 1x1 convs and the fc
    target = float(spec.split(":")[1])
    assert report.real_sparsity == pytest.approx(target, abs=1e-3)
    if spec.endswith(":layer"):
        for rec in report.records.values():
            assert 1 - rec.density == pytest.approx(target, abs=1.0 / rec.mask.size + 1e-9)
    params = dict(resnet.named_parameters())
    for name, rec in report.records.items():
        assert np.array_equal(params[name].detach().numpy() != 0, rec.mask)
    onnx_model = export_check(resnet, example)
    annotate_exported(onnx_model, report)
    onnx.checker.check_model(onnx_model)
    records = read_weight_sparsity(onnx_model)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    assert len(records) == len(report.records)
    for name, ws in records.items():
        # BN folding renamed the weights; the annotated mask still marks exactly the non-zeros
        assert np.array_equal(ws.decoded_mask(), inits[name] != 0)
