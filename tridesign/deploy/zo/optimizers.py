"""Optimizers that consume ZO gradient estimates: ZO-SGD (with momentum) and ZO-Adam.

Plain ZO-SGD without momentum or weight decay applies the estimate straight from its seed, so it
keeps MeZO's O(1) extra memory; momentum and Adam need their d-sized buffers, as in first-order
training. State is a dict of numpy arrays and numbers so a checkpoint can hold it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tridesign.zo.estimators import ZOGradient
from tridesign.errors import UsageError


class ZOOptimizer(Protocol):
    step_count: int

    def step(self, theta: np.ndarray, grad: ZOGradient) -> None:
        """Update theta in place."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class ZOSGD:
    """θ ← θ − lr·(m), m ← momentum·m + ĝ + wd·θ (PyTorch's SGD convention)."""

    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum}")
        self.step_count = 0
        self._buf: np.ndarray | None = None

    def step(self, theta: np.ndarray, grad: ZOGradient) -> None:
        self.step_count += 1
        if self.momentum == 0.0 and self.weight_decay == 0.0:
            grad.add_to(theta, -self.lr)
            return
        g = grad.dense(theta.dtype)
        if self.weight_decay:
            g += self.weight_decay * theta
        if self.momentum:
            if self._buf is None:
                self._buf = g
            else:
                self._buf *= self.momentum
                self._buf += g
            g = self._buf
        theta -= self.lr * g

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step_count": self.step_count}
        if self._buf is not None:
            state["momentum_buffer"] = self._buf.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        buf = state.get("momentum_buffer")
        self._buf = None if buf is None else np.array(buf)


@dataclass
class ZOAdam:
    """Adam on ZO estimates (ZO-AdaMM without the max); the ZO-AE-DS recipe uses lr 1e-3."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        self.step_count = 0
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None

    def step(self, theta: np.ndarray, grad: ZOGradient) -> None:
        self.step_count += 1
        g = grad.dense(theta.dtype)
        if self.weight_decay:
            g += self.weight_decay * theta
        if self._m is None:
            self._m = np.zeros_like(g)
            self._v = np.zeros_like(g)
        self._m *= self.beta1
        self._m += (1 - self.beta1) * g
        self._v *= self.beta2
        self._v += (1 - self.beta2) * g * g
        m_hat = self._m / (1 - self.beta1**self.step_count)
        v_hat = self._v / (1 - self.beta2**self.step_count)
        theta -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(theta.dtype)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step_count": self.step_count}
        if self._m is not None:
            state["m"], state["v"] = self._m.copy(), self._v.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self._m = None if "m" not in state else np.array(state["m"])
        self._v = None if "v" not in state else np.array(state["v"])


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> ZOOptimizer:
    """Optimizer by CLI name."""
    if name == "sgd":
        return ZOSGD(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return ZOAdam(lr=lr, weight_decay=weight_decay)
    raise UsageError(f"unknown ZO optimizer {name!r} (sgd or adam)")
