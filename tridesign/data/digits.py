"""scikit-learn's bundled digits as a CIFAR-shaped classification set: the one real labelled image
set every installation has (no dataset can be downloaded here).

numpy + scipy + scikit-learn only, so the device side (ZO finetuning, which has no torch) and the
model side (training ResNet-20 in tridesign.models.digits) read the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IMAGE_SIZE = 32
IN_CHANNELS = 3
NUM_CLASSES = 10
TEST_FRACTION = 0.25


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
