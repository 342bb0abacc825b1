"""The part of a ZO engine that does not depend on the inference runtime.

An engine (ONNX Runtime or TVM) owns θ, a bound batch and `outputs()`, the model's output at the
current θ; the loss at a given θ is the same on every runtime, so it lives here once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tridesign.errors import UsageError


class EngineLoss:
    """Mixin: `loss(theta)` from the engine's `theta`, `_labels`, `loss_fn` and `outputs()`."""

    theta: np.ndarray
    loss_fn: Any
    _labels: np.ndarray | None

    def loss(self, theta: np.ndarray) -> float:
        """Loss at `theta` on the bound batch; θ is the engine's own buffer unless copied in."""
        if self._labels is None:
            raise UsageError("set_batch() must be called before evaluating the loss")
        if theta is not self.theta:
            self.theta[:] = theta
        return float(self.loss_fn(self.outputs(), self._labels))
