"""Zeroth-order gradient estimators over a flat parameter vector: RGE and CGE.

Both only evaluate a loss, never differentiate it, so they run on any inference engine.

* RGE (randomized gradient estimate): q random directions u_i, Gaussian or uniform on the unit
  sphere; forward difference (f(θ+μu) − f(θ))/μ or central difference (f(θ+μu) − f(θ−μu))/(2μ).
  Sphere estimates are scaled by d, since E[d·u uᵀ] = I for unit u (ZO-AE-DS's "d/q" scaling); both
  kinds estimate the gradient of the μ-smoothed loss. The variance falls as 1/q.
* CGE (coordinate-wise estimate): one difference per coordinate of a chosen subset (DeepZero's
  sparse CGE); coordinates outside the subset get zero.

Directions are regenerated from (seed, index) instead of being stored (MeZO's trick): an estimate
is q scalars plus one seed, and applying it re-draws each direction once. When no batched loss is
given, perturbations are applied to θ in place and undone, so the estimator needs O(1) memory
beyond the weights (the undo can differ from the original by float rounding, as in MeZO; it is
deterministic, so a resumed run reproduces it).

A loss is either `f(theta) -> float` or, for forward parallelization, `batched(thetas[k, d]) ->
losses[k]`, which evaluates k perturbed copies in one engine run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tridesign.errors import UsageError

Loss = Callable[[np.ndarray], float]
BatchedLoss = Callable[[np.ndarray], np.ndarray]
Direction = Literal["gaussian", "sphere"]
Difference = Literal["forward", "central"]


@dataclass(frozen=True)
class RGEConfig:
    """Randomized gradient estimate: q directions of one kind, smoothing μ, one difference scheme."""

    q: int = 20
    mu: float = 5e-3
    direction: Direction = "gaussian"
    difference: Difference = "forward"

    def __post_init__(self) -> None:
        if self.q < 1:
            raise UsageError(f"RGE needs at least one query direction, got q={self.q}")
        if self.mu <= 0:
            raise UsageError(f"the smoothing radius mu must be positive, got {self.mu}")
        if self.direction not in ("gaussian", "sphere"):
            raise UsageError(f"unknown RGE direction {self.direction!r} (gaussian or sphere)")
        if self.difference not in ("forward", "central"):
            raise UsageError(f"unknown difference scheme {self.difference!r} (forward or central)")

    def queries(self) -> int:
        """Loss evaluations per estimate (the base value counts for forward differences)."""
        return self.q + 1 if self.difference == "forward" else 2 * self.q


@dataclass(frozen=True)
class CGEConfig:
    """Coordinate-wise gradient estimate over a subset of coordinates."""

    mu: float = 5e-3
    difference: Difference = "forward"

    def __post_init__(self) -> None:
        if self.mu <= 0:
            raise UsageError(f"the smoothing radius mu must be positive, got {self.mu}")
        if self.difference not in ("forward", "central"):
            raise UsageError(f"unknown difference scheme {self.difference!r} (forward or central)")


def direction(seed: int, index: int, d: int, kind: Direction, dtype: np.dtype = np.float32) -> np.ndarray:
    """The index-th direction of an estimate drawn with `seed`; identical every time it is asked for.

    Sphere directions are unit vectors (the perturbation is μ·u, as in ZO-AE-DS); `rge` puts the
    factor d into the coefficients.
    """
    rng = np.random.default_rng((seed, index))
    u = rng.standard_normal(d, dtype=np.float64)
    if kind == "sphere":
        u /= np.linalg.norm(u)
    return u.astype(dtype, copy=False)


@dataclass
class ZOGradient:
    """A gradient estimate kept as coefficients: RGE Σ_i coeffs[i]·u_i, or CGE coeffs at coords.

    `loss` is the unperturbed loss when it was evaluated (forward differences), else the mean of the
    perturbed pairs; `queries` counts loss evaluations (one per perturbed copy).
    """

    d: int
    coeffs: np.ndarray
    loss: float
    queries: int
    seed: int = 0
    kind: Direction | None = None  # None: CGE
    coords: np.ndarray | None = None

    def add_to(self, theta: np.ndarray, scale: float) -> None:
        """theta += scale · ĝ, re-drawing each direction once (no d-sized buffer beyond one direction)."""
        if self.coords is not None:
            theta[self.coords] += (scale * self.coeffs).astype(theta.dtype)
            return
        for i, c in enumerate(self.coeffs):
            if c != 0.0:
                theta += (scale * c) * direction(self.seed, i, self.d, self.kind, theta.dtype)

    def dense(self, dtype: np.dtype = np.float64) -> np.ndarray:
        """The estimate as a d-vector (for momentum/Adam buffers and for tests)."""
        g = np.zeros(self.d, dtype=dtype)
        self.add_to(g, 1.0)
        return g


def rge(
    f: Loss | None,
    theta: np.ndarray,
    config: RGEConfig,
    seed: int,
    batched: BatchedLoss | None = None,
    chunk: int = 64,
) -> ZOGradient:
    """Randomized gradient estimate of f at theta (theta is restored before returning).

    With `batched`, perturbed copies are evaluated `chunk` at a time (O(chunk·d) memory);
    otherwise theta is perturbed in place, one query at a time (O(d) for one direction).
    """
    d, q, mu = theta.size, config.q, config.mu
    signs = (1.0,) if config.difference == "forward" else (1.0, -1.0)
    if batched is not None:
        values = _batched_values(theta, batched, chunk, [(i, s) for i in range(q) for s in signs], seed, config)
        base = float(batched(theta[None, :])[0]) if config.difference == "forward" else None
    else:
        if f is None:
            raise ValueError("rge needs f or batched")
        base = float(f(theta)) if config.difference == "forward" else None
        values = np.empty(q * len(signs))
        for i in range(q):
            u = direction(seed, i, d, config.direction, theta.dtype)
            for j, s in enumerate(signs):
                theta += (s * mu) * u
                values[i * len(signs) + j] = f(theta)
                theta -= (s * mu) * u
    scale = d / q if config.direction == "sphere" else 1.0 / q
    coeffs = _difference_coefficients(values, base, mu, len(signs)) * scale
    loss = base if base is not None else float(values.mean())
    queries = config.queries() if config.difference == "forward" else 2 * q
    return ZOGradient(d=d, coeffs=coeffs, loss=loss, queries=queries, seed=seed, kind=config.direction)


def cge(
    f: Loss | None,
    theta: np.ndarray,
    coords: np.ndarray,
    config: CGEConfig,
    batched: BatchedLoss | None = None,
    chunk: int = 64,
) -> ZOGradient:
    """Coordinate-wise estimate over `coords` (flat indices into theta); zero elsewhere."""
    coords = np.asarray(coords, dtype=np.int64)
    if coords.size and (coords.min() < 0 or coords.max() >= theta.size):
        raise UsageError(f"CGE coordinates fall outside the {theta.size} parameters")
    mu = config.mu
    signs = (1.0,) if config.difference == "forward" else (1.0, -1.0)
    if batched is not None:
        pairs = [(int(c), s) for c in coords for s in signs]
        values = _batched_values(theta, batched, chunk, pairs, None, None, mu=mu)
        base = float(batched(theta[None, :])[0]) if config.difference == "forward" else None
    else:
        if f is None:
            raise ValueError("cge needs f or batched")
        base = float(f(theta)) if config.difference == "forward" else None
        values = np.empty(coords.size * len(signs))
        for k, c in enumerate(coords):
            original = theta[c]
            for j, s in enumerate(signs):
                theta[c] = original + s * mu
                values[k * len(signs) + j] = f(theta)
            theta[c] = original
    coeffs = _difference_coefficients(values, base, mu, len(signs))
    loss = base if base is not None else float(values.mean()) if values.size else float("nan")
    queries = values.size + (1 if base is not None else 0)
    return ZOGradient(d=theta.size, coeffs=coeffs, loss=loss, queries=queries, coords=coords)


def coordinate_subset(
    layer_sizes: list[int], ratios: list[float], seed: int, masks: list[np.ndarray] | None = None
) -> np.ndarray:
    """DeepZero's sparse-CGE coordinates: per layer, a random fraction `ratio` of its coordinates.

    Layers are consecutive slices of the flat vector. With `masks` (e.g. ZO-GraSP's), coordinates are
    drawn only where the mask is nonzero, so pruned weights are never queried.
    """
    if len(layer_sizes) != len(ratios):
        raise UsageError("one ratio per layer is needed for the CGE coordinate subset")
    rng = np.random.default_rng(seed)
    chosen, offset = [], 0
    for i, (size, ratio) in enumerate(zip(layer_sizes, ratios)):
        if not 0.0 <= ratio <= 1.0:
            raise UsageError(f"coordinate ratio {ratio} is not within [0, 1]")
        pool = np.arange(size) if masks is None else np.flatnonzero(np.asarray(masks[i]).ravel())
        take = int(round(ratio * pool.size))
        if take:
            chosen.append(offset + np.sort(rng.choice(pool, size=take, replace=False)))
        offset += size
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def _difference_coefficients(values: np.ndarray, base: float | None, mu: float, n_signs: int) -> np.ndarray:
    if n_signs == 1:
        return (values - base) / mu
    pairs = values.reshape(-1, 2)
    return (pairs[:, 0] - pairs[:, 1]) / (2.0 * mu)


def _batched_values(
    theta: np.ndarray,
    batched: BatchedLoss,
    chunk: int,
    pairs: list[tuple[int, float]],
    seed: int | None,
    config: RGEConfig | None,
    mu: float | None = None,
) -> np.ndarray:
    """Evaluate the perturbed copies named by (direction index or coordinate, sign), chunk by chunk."""
    out = np.empty(len(pairs))
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        thetas = np.repeat(theta[None, :], len(part), axis=0)
        for row, (i, s) in enumerate(part):
            if config is not None:
                thetas[row] += (s * config.mu) * direction(seed, i, theta.size, config.direction, theta.dtype)
            else:
                thetas[row, i] += s * mu
        out[start : start + len(part)] = np.asarray(batched(thetas), dtype=np.float64).reshape(-1)
    return out
