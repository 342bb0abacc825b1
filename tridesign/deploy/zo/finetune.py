"""The ZO finetuning loop: batches, estimates, updates, checkpoints, resume, a new artifact.

Everything random in step t (the mini-batch, the RGE seed, the CGE coordinates) is drawn from
(seed, t) alone, and a checkpoint holds θ and the optimizer state exactly; so a run interrupted
after a checkpoint and resumed ends bit-for-bit where the uninterrupted run ends. The input model
is only read: the result is written as a new artifact directory, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnx

from tridesign.atomic import atomic_file
from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.zo.estimators import CGEConfig, RGEConfig, ZOGradient, cge, rge
from tridesign.deploy.zo.optimizers import make_optimizer
from tridesign.errors import TridesignError, UsageError

CHECKPOINT_FORMAT = "tridesign-zo-checkpoint/1"


class ZOEngine(Protocol):
    """What the loop needs from an engine (`OrtEngine`, `TvmEngine`)."""

    theta: np.ndarray
    params: list  # tridesign.deploy.zo.params.Param, in θ order
    loss_fn: Any

    @property
    def dim(self) -> int: ...

    def set_batch(self, inputs: dict[str, np.ndarray], labels: np.ndarray) -> None: ...

    def loss(self, theta: np.ndarray) -> float: ...

    def loss_batched(self, thetas: np.ndarray) -> np.ndarray: ...

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...

    def finetuned_model(self) -> onnx.ModelProto: ...


@dataclass(frozen=True)
class FinetuneConfig:
    """One ZO finetune; `queries` is q for RGE and the coordinates per step for CGE."""

    selector: str
    estimator: Literal["rge", "cge"] = "rge"
    queries: int = 20
    steps: int = 100
    mu: float = 5e-3
    lr: float = 1e-3
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    direction: Literal["gaussian", "sphere"] = "gaussian"
    difference: Literal["forward", "central"] = "forward"
    batch: int = 64
    seed: int = 0
    batched: bool = True  # evaluate the perturbed copies through the Scan-batched engine path
    chunk: int = 32  # perturbed copies per batched run
    checkpoint_every: int = 25
    layerwise: bool = True  # CGE on the ORT engine: re-run only the sub-graph after each coordinate's tensor
    sparse: bool = False  # CGE only on nonzero weights (a pruned model's mask) and on biases: DeepZero's sparse CGE

    def __post_init__(self) -> None:
        if self.estimator not in ("rge", "cge"):
            raise UsageError(f"unknown estimator {self.estimator!r} (rge or cge)")
        if self.optimizer not in ("sgd", "adam"):
            raise UsageError(f"unknown ZO optimizer {self.optimizer!r} (sgd or adam)")
        RGEConfig(q=self.queries, mu=self.mu, direction=self.direction, difference=self.difference)
        if self.queries < 1 or self.steps < 1 or self.batch < 1:
            raise UsageError("--queries, --steps and --batch must be positive")


@dataclass
class FinetuneResult:
    losses: list[float]  # mini-batch loss at the start of every step
    queries: int  # loss evaluations (one per perturbed forward) over the whole run
    theta: np.ndarray
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def load_data(path: Path, input_names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """An .npz with one array per model input (or `x` for a one-input model) and labels `y`."""
    path = Path(path)
    if not path.is_file():
        raise TridesignError(f"{path}: no such data file")
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise TridesignError(f"{path} is not a readable .npz file ({err})") from None
    if "y" not in data:
        raise UsageError(f"{path} has no labels array 'y' (has: {', '.join(data.files)})")
    if len(input_names) == 1 and input_names[0] not in data and "x" in data:
        inputs = {input_names[0]: data["x"]}
    else:
        missing = [n for n in input_names if n not in data]
        if missing:
            raise UsageError(f"{path} lacks input array(s) {', '.join(missing)} (has: {', '.join(data.files)})")
        inputs = {n: data[n] for n in input_names}
    inputs = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
    return inputs, np.asarray(data["y"]).astype(np.int64)


def active_coordinates(engine: ZOEngine) -> np.ndarray:
    """Coordinates sparse CGE may query: nonzero entries of weight tensors, all of 1-D tensors.

    A pruned model (e.g. by ZO-GraSP's per-layer ratios) carries its mask as zeros; querying only
    the survivors gives a sparse gradient, so pruned weights stay exactly zero ("sparse gradient,
    dense model" in DeepZero's words). Biases and folded BatchNorm shifts are always trainable.
    """
    keep = engine.theta != 0
    for p in engine.params:
        if len(p.shape) <= 1:
            keep[p.offset : p.offset + p.size] = True
    return np.flatnonzero(keep)


def estimate(engine: ZOEngine, config: FinetuneConfig, step: int, pool: np.ndarray | None = None) -> ZOGradient:
    """One gradient estimate at step `step` on the bound batch (CGE draws coordinates from `pool`)."""
    batched = engine.loss_batched if config.batched else None
    seed = int(np.random.SeedSequence((config.seed, step, 1)).generate_state(1)[0])
    if config.estimator == "rge":
        cfg = RGEConfig(q=config.queries, mu=config.mu, direction=config.direction, difference=config.difference)
        return rge(engine.loss, engine.theta, cfg, seed, batched=batched, chunk=config.chunk)
    rng = np.random.default_rng((config.seed, step, 2))
    pool = np.arange(engine.dim) if pool is None else pool
    coords = np.sort(rng.choice(pool, size=min(config.queries, pool.size), replace=False))
    if config.layerwise and isinstance(engine, OrtEngine):
        from tridesign.deploy.zo.layerwise import LayerwiseCGE

        if getattr(engine, "_layerwise", None) is None:
            engine._layerwise = LayerwiseCGE(engine)
        return engine._layerwise.estimate(coords, CGEConfig(config.mu, config.difference))
    return cge(engine.loss, engine.theta, coords, CGEConfig(config.mu, config.difference), batched=batched, chunk=config.chunk)


def finetune(
    engine: ZOEngine,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    config: FinetuneConfig,
    checkpoint: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    stop_after: int | None = None,
) -> FinetuneResult:
    """Run `config.steps` ZO steps on `engine`, resuming from `checkpoint` when it holds a run.

    `stop_after` ends the run early after that many steps (as an interrupt would), leaving the
    checkpoint behind; tests use it to prove that resuming reproduces the uninterrupted run.
    """
    optimizer = make_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)
    n = len(labels)
    losses: list[float] = []
    start, queries = 0, 0
    pool = active_coordinates(engine) if config.sparse else None  # from the input model, before any resume
    if config.sparse and config.estimator != "cge":
        raise UsageError("--sparse needs --estimator cge (RGE perturbs every coordinate)")
    if checkpoint is not None and Path(checkpoint).exists():
        start, queries, losses = _restore(Path(checkpoint), engine, optimizer, config)
    for t in range(start, config.steps):
        idx = np.random.default_rng((config.seed, t, 0)).choice(n, size=min(config.batch, n), replace=False)
        engine.set_batch({k: v[idx] for k, v in inputs.items()}, labels[idx])
        grad = estimate(engine, config, t, pool)
        optimizer.step(engine.theta, grad)
        losses.append(grad.loss)
        queries += grad.queries
        if on_step is not None:
            on_step(t + 1, grad.loss)
        done = t + 1
        if checkpoint is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            _save(Path(checkpoint), engine, optimizer, config, done, queries, losses)
        if stop_after is not None and done - start >= stop_after:
            break
    return FinetuneResult(losses, queries, engine.theta.copy(), resumed_from=start)


def _save(path: Path, engine: ZOEngine, optimizer, config: FinetuneConfig, step: int, queries: int, losses: list[float]) -> None:
    state = optimizer.state_dict()
    arrays = {f"opt.{k}": v for k, v in state.items() if isinstance(v, np.ndarray)}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(config),
        "step": step,
        "queries": queries,
        "optimizer": {k: v for k, v in state.items() if not isinstance(v, np.ndarray)},
    }
    with atomic_file(path) as handle:
        np.savez(handle, theta=engine.theta, losses=np.asarray(losses), meta=np.array(json.dumps(meta)), **arrays)


def _restore(path: Path, engine: ZOEngine, optimizer, config: FinetuneConfig) -> tuple[int, int, list[float]]:
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            theta, losses = data["theta"], [float(v) for v in data["losses"]]
            arrays = {k[4:]: data[k] for k in data.files if k.startswith("opt.")}
    except (OSError, ValueError, KeyError) as err:
        raise TridesignError(f"{path}: unreadable checkpoint ({err}); delete it to start over") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta["config"] != asdict(config):
        raise UsageError(f"{path} holds a run with other settings; delete it or use the same options to resume")
    if theta.shape != engine.theta.shape:
        raise UsageError(f"{path} holds {theta.size} parameters, the selection has {engine.dim}")
    engine.theta[:] = theta
    optimizer.load_state_dict({**meta["optimizer"], **arrays})
    return int(meta["step"]), int(meta["queries"]), losses


def evaluate(engine: ZOEngine, inputs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Loss and top-1 accuracy at the current θ on all rows."""
    logits = engine.predict(inputs)
    return {
        "loss": float(engine.loss_fn(logits, labels)),
        "accuracy": float((logits.argmax(-1) == labels).mean()),
    }


def finetuned_model(engine: ZOEngine, config: FinetuneConfig, result: FinetuneResult) -> onnx.ModelProto:
    """The finetuned graph, recording what was done in its metadata."""
    model = engine.finetuned_model()
    model.metadata_props.add(key="tridesign.zo_finetune", value=json.dumps({**asdict(config), "queries_used": result.queries}))
    return model
