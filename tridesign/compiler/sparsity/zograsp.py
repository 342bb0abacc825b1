"""DeepZero's ZO-GraSP: pruning-at-init scores from zeroth-order gradient estimates.

GraSP scores a weight by -theta * (H g), the effect of removing it on gradient flow. DeepZero
(ICLR'24) replaces both backward passes by randomized gradient estimates -- g0 = RGE(theta),
g1 = RGE(theta + mu*g0), H g ~ (g1 - g0) / mu with q = 192 and mu = 5e-3 -- and uses the global
ranking only to set *per-layer ratios*; the ZO runtime then trains on masks at those ratios. We use
the RGE of `tridesign.zo.estimators` (the same estimator the on-device finetuning runs), so
the loss is a plain numpy function of the flat parameter vector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tridesign.compiler.sparsity.importance import grasp_scores
from tridesign.zo.estimators import RGEConfig, rge

if TYPE_CHECKING:
    import torch

DEFAULT_Q = 192
DEFAULT_MU = 5e-3


def zo_hessian_gradient(
    loss: Callable[[np.ndarray], float], theta: np.ndarray, q: int = DEFAULT_Q, mu: float = DEFAULT_MU, seed: int = 0
) -> np.ndarray:
    """(g1 - g0) / mu with g0 = RGE(theta), g1 = RGE(theta + mu * g0), same directions for both."""
    config = RGEConfig(q=q, mu=mu)
    g0 = rge(loss, theta, config, seed).dense(np.float64)
    shifted = (theta + mu * g0).astype(theta.dtype)
    g1 = rge(loss, shifted, config, seed).dense(np.float64)
    return (g1 - g0) / mu


def zo_scores_torch(
    model: "torch.nn.Module",
    layers: dict[str, "torch.nn.Module"],
    inputs: tuple["torch.Tensor", ...],
    labels: "torch.Tensor",
    q: int = DEFAULT_Q,
    mu: float = DEFAULT_MU,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """ZO-GraSP importance (theta * Hg; low = prune) of each layer's weight, by forward passes only."""
    import torch
    import torch.nn.functional as F

    params = [layers[n].weight for n in layers]
    sizes = [p.numel() for p in params]
    theta = torch.cat([p.detach().flatten() for p in params]).numpy().astype(np.float32)
    saved = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()

    def loss(vec: np.ndarray) -> float:
        with torch.no_grad():
            offset = 0
            for p, size in zip(params, sizes):
                p.copy_(torch.from_numpy(vec[offset : offset + size]).view_as(p))
                offset += size
            return float(F.cross_entropy(model(*inputs), labels))

    try:
        hg = zo_hessian_gradient(loss, theta.copy(), q=q, mu=mu, seed=seed)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        model.train(was_training)
    scores = grasp_scores(theta.astype(np.float64), hg)
    out, offset = {}, 0
    for name, p, size in zip(layers, params, sizes):
        out[name] = scores[offset : offset + size].reshape(tuple(p.shape))
        offset += size
    return out


def self_labelled(model: "torch.nn.Module", inputs: tuple["torch.Tensor", ...]) -> tuple[tuple, "torch.Tensor"]:
    """Inputs with the model's own predictions as labels, for models that bring no labelled data."""
    import torch

    from tridesign.errors import UsageError

    with torch.no_grad():
        logits = model(*inputs)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise UsageError("zograsp on a model without task data needs a classifier (one (batch, classes) output)")
    return inputs, logits.argmax(1)
