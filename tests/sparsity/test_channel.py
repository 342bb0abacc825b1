"""Structured channel pruning: channels physically removed, couplings kept consistent."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.sparsity import annotate_exported, prune_torch
from tridesign.sparsity_plan import load_plan

from .conftest import export_check


def test_resnet_channels_shrink_residuals_stay_coupled(resnet, example) -> None:
    dense_macs_params = sum(p.numel() for p in resnet.parameters())
    report = prune_torch(resnet, load_plan("channel:0.5"), example)
    # every stage width halves; residual adds force conv2 and the shortcut to keep the same channels
    assert resnet.conv1.weight.shape[0] == 4
    for stage, width in ((resnet.layer1, 4), (resnet.layer2, 8), (resnet.layer3, 16)):
        for block in stage:
            assert block.conv1.weight.shape[0] == width and block.conv2.weight.shape[0] == width
            assert block.bn2.num_features == width
    assert resnet.fc.out_features == 10 and resnet.fc.in_features == 16  # logits kept
    assert resnet.conv1.in_channels == 3  # model inputs never pruned
    assert sum(p.numel() for p in resnet.parameters()) < 0.3 * dense_macs_params
    assert report.records["layer1.0.conv1.weight"].density == pytest.approx(0.25)
    onnx_model = export_check(resnet, example)
    annotate_exported(onnx_model, report)
    records = read_weight_sparsity(onnx_model)
    assert len(records) == len(report.records)
    assert all(r.method == "channel" and r.density == 1.0 and r.original_shape for r in records.values())


class Branchy(nn.Module):
    """Concat of two branches, BatchNorm over the concat, a depthwise conv inside a residual add,
    and optionally a grouped conv: the hard dependency cases."""

    def __init__(self, grouped: bool) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.last = nn.Conv2d(16, 16, 3, padding=1, groups=4 if grouped else 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))
        y = self.last(torch.relu(self.dw(y)) + y)
        return self.head(y.mean(dim=(2, 3)))


INPUTS = {"input": np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)}


def test_concat_depthwise_residual_shrink_consistently() -> None:
    torch.manual_seed(0)
    model = Branchy(grouped=False).eval()
    prune_torch(model, load_plan("channel:0.5"), INPUTS)
    assert model.a.out_channels + model.b.out_channels == model.bn.num_features == model.dw.in_channels == 8
    assert model.dw.groups == model.dw.in_channels == model.dw.out_channels  # still depthwise
    assert model.last.in_channels == 8 and model.last.out_channels == 8
    assert model.head.out_features == 5 and model.head.in_features == 8
    onnx.checker.check_model(export_check(model, INPUTS))


def test_grouped_conv_inputs_are_kept_whole() -> None:
    torch.manual_seed(0)
    model = Branchy(grouped=True).eval()
    report = prune_torch(model, load_plan("channel:0.5"), INPUTS)
    assert model.last.groups == 4 and model.last.in_channels == 16 and model.bn.num_features == 16
    # the grouped conv's own outputs feed only the head, but it is kept whole too; nothing breaks
    assert report.records == {}
    export_check(model, INPUTS)


def test_yaml_per_layer_channel_ratio(resnet, example, tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("layers:\n  layer1.0.conv1: channel:0.5\n")
    report = prune_torch(resnet, load_plan(plan), example)
    assert resnet.layer1[0].conv1.out_channels == 4
    assert resnet.layer2[0].conv1.out_channels == 16  # untouched layers keep their width
    assert set(report.records) == {"layer1.0.conv1.weight", "layer1.0.conv2.weight"}
