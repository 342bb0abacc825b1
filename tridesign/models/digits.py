"""A trained ResNet-20 on real data: scikit-learn's bundled digits, upsampled to 32x32.

No pretrained weights can be downloaded here, yet pruning, quantization and ZO finetuning all need
an accuracy that means something. The 1,797 bundled 8x8 digit images are the one real labelled
image set every installation has; bilinearly upsampled to 32x32 and repeated over **3 channels**
they fit the registered CIFAR-shaped `resnet20` unchanged (same input name, shape and width), so
every tool that takes `resnet20` takes the trained model too.

The data side is numpy + scipy only (the device side, which has no torch, evaluates and finetunes
on the same arrays); torch is imported inside the functions that build and train the model.
Trained weights are cached in ``$XDG_CACHE_HOME/tridesign`` (or ``~/.cache/tridesign``) and
trained on first use, so the first call takes about a minute on 2 cores and later calls load.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 32
IN_CHANNELS = 3
NUM_CLASSES = 10
TEST_FRACTION = 0.25
# Bumped whenever the data preparation or the training recipe changes, so stale caches are ignored.
RECIPE_VERSION = 2


@dataclass(frozen=True)
class DigitsSplit:
    """Stratified train/test split, images as float32 (N, 3, 32, 32), normalised to zero mean."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=4)
def load_digits_split(seed: int = 0) -> DigitsSplit:
    """The digits, upsampled to 32x32 and split 75/25 (stratified, fixed seed)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32) / 16.0  # the 8x8 grey levels run 0..16
    factor = IMAGE_SIZE / images.shape[-1]
    up = zoom(images, (1, factor, factor), order=1).clip(0.0, 1.0)
    up = (up - 0.5) / 0.5  # roughly zero-centred, like per-channel CIFAR normalisation
    x = np.repeat(up[:, None], IN_CHANNELS, axis=1).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    return DigitsSplit(np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te)


def digits_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Real test images in the registry's input format ({"input": (batch, 3, 32, 32)})."""
    split = load_digits_split()
    idx = np.random.default_rng(seed).choice(len(split.x_test), size=batch, replace=batch > len(split.x_test))
    return {"input": split.x_test[idx]}


def calibration_set(count: int = 64, batch: int = 16, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Training images (never test images) in batches, for int8 calibration."""
    split = load_digits_split()
    idx = np.random.default_rng(seed).choice(len(split.x_train), size=count, replace=False)
    return [{"input": split.x_train[idx[i : i + batch]]} for i in range(0, count, batch)]


def cache_dir() -> Path:
    """Where trained weights live: ``$XDG_CACHE_HOME/tridesign`` or ``~/.cache/tridesign``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tridesign"


def weights_path(config: str = "tiny", seed: int = 0) -> Path:
    return cache_dir() / f"resnet20_digits_{config}_s{seed}_v{RECIPE_VERSION}.pt"


def _batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    order = rng.permutation(len(x))
    for i in range(0, len(x), size):
        sel = order[i : i + size]
        yield x[sel], y[sel]


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shifts of up to 2 pixels: cheap, and keeps the small net from memorising positions."""
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(-2, 3, size=(len(x), 2))):
        out[i] = np.roll(x[i], (int(dy), int(dx)), axis=(1, 2))
    return out


def train_steps(
    model: "torch.nn.Module",
    steps: int,
    lr: float = 0.01,
    batch: int = 64,
    seed: int = 0,
    masks: dict[str, "torch.Tensor"] | None = None,
) -> list[float]:
    """SGD with cosine decay for `steps` mini-batches of digits; returns the losses.

    `masks` (parameter name -> 0/1 tensor) are re-applied after every step, so pruned weights stay
    zero during recovery finetuning. Shared by the initial training and the sparsity recovery.
    """
    import torch
    import torch.nn.functional as F

    split = load_digits_split()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    params = dict(model.named_parameters())
    losses: list[float] = []
    model.train()
    while len(losses) < steps:
        for xb, yb in _batches(split.x_train, split.y_train, batch, rng):
            if len(losses) >= steps:
                break
            logits = model(torch.from_numpy(_augment(xb, rng)))
            loss = F.cross_entropy(logits, torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if masks:
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
            losses.append(loss.item())
    model.eval()
    return losses


def evaluate(model: "torch.nn.Module", batch: int = 256) -> float:
    """Top-1 accuracy (0..1) of a torch model on the digits test split."""
    import torch

    split = load_digits_split()
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split.x_test), batch):
            pred = model(torch.from_numpy(split.x_test[i : i + batch])).argmax(1).numpy()
            correct += int((pred == split.y_test[i : i + batch]).sum())
    model.train(was_training)
    return correct / len(split.x_test)


def evaluate_logits_fn(predict, batch: int = 256) -> float:
    """Top-1 accuracy of any ``predict(x: np.ndarray) -> logits`` (an ORT session, a bundle runner)."""
    split = load_digits_split()
    correct = 0
    for i in range(0, len(split.x_test), batch):
        pred = np.asarray(predict(split.x_test[i : i + batch])).argmax(1)
        correct += int((pred == split.y_test[i : i + batch]).sum())
    return correct / len(split.x_test)


def train_resnet20_digits(
    config: str = "tiny", epochs: int = 15, seed: int = 0, batch: int = 64
) -> tuple["torch.nn.Module", float]:
    """Train ResNet-20 (`config` width) on digits from scratch; returns (model in eval mode, test accuracy)."""
    import torch

    from tridesign.models.deepzero import build_resnet20

    torch.manual_seed(seed)
    model = build_resnet20(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
    steps = epochs * -(-len(load_digits_split().x_train) // batch)
    train_steps(model, steps, lr=0.05, batch=batch, seed=seed)
    return model, evaluate(model)


def _save_atomic(state: dict, path: Path) -> None:
    import torch

    from tridesign.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save(state, handle)


def load_trained_resnet20(config: str = "tiny", seed: int = 0, retrain: bool = False) -> "torch.nn.Module":
    """The digits-trained ResNet-20 in eval mode: loaded from the cache, trained (and cached) on first use."""
    import torch

    from tridesign.models.deepzero import build_resnet20

    path = weights_path(config, seed)
    if path.exists() and not retrain:
        model = build_resnet20(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        return model.eval()
    start = time.perf_counter()
    model, acc = train_resnet20_digits(config, seed=seed)
    meta = {"accuracy": acc, "seconds": time.perf_counter() - start, "recipe": RECIPE_VERSION}
    _save_atomic({"state_dict": model.state_dict(), "meta": meta}, path)
    return model


def cached_accuracy(config: str = "tiny", seed: int = 0) -> float | None:
    """Test accuracy recorded when the cached weights were trained (None when not trained yet)."""
    import torch

    path = weights_path(config, seed)
    if not path.exists():
        return None
    return float(torch.load(path, map_location="cpu", weights_only=True)["meta"]["accuracy"])
