"""Recovery finetuning keeps pruned weights at zero and needs task data."""

from __future__ import annotations

import pytest

from tridesign.compiler.sparsity import prune_torch, recover_torch
from tridesign.errors import UsageError
from tridesign.sparsity_plan import load_plan


def test_recovery_keeps_masks_and_lowers_loss(resnet, example) -> None:
    report = prune_torch(resnet, load_plan("nm:2:4"), example)
    result = recover_torch(resnet, "resnet20", 12)
    assert result["steps"] == 12 and result["data"] == "digits"
    assert result["loss_last"] < result["loss_first"]
    params = dict(resnet.named_parameters())
    for name, rec in report.records.items():
        assert not params[name].detach().numpy()[~rec.mask].any(), name


def test_models_without_task_data_are_refused(resnet) -> None:
    with pytest.raises(UsageError, match="task data"):
        recover_torch(resnet, "dncnn", 5)
    with pytest.raises(UsageError):
        recover_torch(resnet, "resnet20", -1)
