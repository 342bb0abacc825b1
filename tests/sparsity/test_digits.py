"""The digits data and the trained ResNet-20 the sparsity work measures accuracy on."""

from __future__ import annotations

import numpy as np
import pytest

from tridesign.data.digits import calibration_set, load_digits_split
from tridesign.models import digits


def test_split_shapes_and_stratification() -> None:
    split = load_digits_split()
    assert split.x_train.shape[1:] == (3, 32, 32) and split.x_train.dtype == np.float32
    assert len(split.x_train) + len(split.x_test) == 1797
    # every class appears in the test split in roughly its share
    counts = np.bincount(split.y_test, minlength=10)
    assert counts.min() >= 40 and counts.max() <= 50
    # the three channels are copies of the grey image
    assert np.array_equal(split.x_test[:, 0], split.x_test[:, 2])


def test_cache_dir_follows_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert digits.weights_path("tiny").parent == tmp_path / "tridesign"


def test_calibration_uses_training_images_only() -> None:
    split = load_digits_split()
    calib = np.concatenate([b["input"] for b in calibration_set(32, 8)])
    train_rows = {row.tobytes() for row in split.x_train}
    assert calib.shape == (32, 3, 32, 32)
    assert all(row.tobytes() in train_rows for row in calib)


def test_train_steps_lowers_loss_and_keeps_masks() -> None:
    import torch

    from tridesign.models.deepzero import build_resnet20

    torch.manual_seed(0)
    model = build_resnet20("tiny")
    mask = (torch.rand_like(model.conv1.weight) > 0.5).float()
    model.conv1.weight.data.mul_(mask)
    losses = digits.train_steps(model, 30, lr=0.05, masks={"conv1.weight": mask})
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert torch.all(model.conv1.weight[mask == 0] == 0)


@pytest.mark.slow
def test_trained_model_reaches_95_percent() -> None:
    model = digits.load_trained_resnet20("tiny")
    assert digits.evaluate(model) >= 0.95
