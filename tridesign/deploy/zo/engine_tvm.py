"""Apache TVM as a ZO training engine: the trainable tensors stay function parameters.

The same rewrite as the ORT engine (selected initializers become graph inputs, the graph is split
for feature reuse) feeds TVM's ONNX importer, which binds the frozen weights as constants and
keeps the trainable ones as parameters of `main`; prefix and suffix are compiled once each for a
fixed batch size, and every query calls the suffix's VM function with the current θ. The engine
exposes what `finetune.finetune` uses (`theta`, `dim`, `params`, `set_batch`, `loss`,
`loss_batched`, `predict`, `finetuned_model`), so the loop, checkpoints and resume are shared.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnx

from tridesign.deploy.tvm_runtime import import_onnx
from tridesign.deploy.zo import params as P
from tridesign.deploy.zo.engine_loss import EngineLoss
from tridesign.deploy.zo.engine_ort import LossFn, cross_entropy
from tridesign.deploy.zo.feature_reuse import Split, detach_conv_biases, split_at_trainable
from tridesign.errors import UsageError
from tridesign.board.tvm_module import configure_tvm_runtime


def _compile(model: onnx.ModelProto, batch: int, threads: int) -> tuple[Any, list[str]]:
    """ONNX -> Relax (trainable tensors as parameters) -> a VM on the CPU; returns (vm, input order)."""
    import tvm
    from tvm import relax

    configure_tvm_runtime()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the importer renames 'fc.weight' to 'fc_weight'; order is what we use
        mod, _ = import_onnx(model, batch)
    executable = tvm.compile(mod, tvm.target.Target({"kind": "llvm", "num-cores": threads}))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm, [i.name for i in P.data_inputs(model)]


class TvmEngine(EngineLoss):
    """Loss of a model on one data batch of fixed size as a function of θ, evaluated by TVM."""

    def __init__(
        self,
        model: onnx.ModelProto,
        selector: str,
        batch: int,
        output: str | None = None,
        loss: LossFn = cross_entropy,
        reuse_features: bool = True,
        threads: int = 2,
    ) -> None:
        import tvm

        model = P.materialize_aliases(model)
        self.model = model
        self.params = P.select(model, selector)
        self.theta = P.initial_theta(model, self.params)
        self.output = output or model.graph.output[0].name
        self.loss_fn = loss
        self.batch = batch
        self.queries = 0
        self._dev = tvm.cpu()
        names = [p.initializer for p in self.params]
        trainable = P.as_inputs(model, self.params)
        if reuse_features:
            self.split = split_at_trainable(detach_conv_biases(trainable, names), names, [self.output])
        else:
            self.split = Split(None, trainable, [], [i.name for i in P.data_inputs(model)], [self.output])
        self._prefix = None if self.split.prefix is None else _compile(self.split.prefix, batch, threads)
        self._suffix, self._suffix_inputs = _compile(self.split.suffix, batch, threads)
        self._features: dict[str, Any] = {}
        self._labels: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.theta.size

    def set_batch(self, inputs: dict[str, np.ndarray], labels: np.ndarray) -> None:
        """Run the prefix once for this batch (exactly `batch` rows) and keep its activations."""
        import tvm

        rows = len(next(iter(inputs.values())))
        if rows != self.batch:
            raise UsageError(f"the TVM engine was compiled for batches of {self.batch} rows, got {rows}")
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        features = {n: tvm.runtime.tensor(feed[n], self._dev) for n in self.split.passthrough}
        if self._prefix is not None:
            vm, order = self._prefix
            out = vm["main"](*(tvm.runtime.tensor(feed[n], self._dev) for n in order))
            outs = [out] if len(self.split.cut) == 1 else list(out)
            features.update(zip(self.split.cut, outs))
        self._features = features
        self._labels = np.asarray(labels)

    def outputs(self) -> np.ndarray:
        import tvm

        slices = {p.initializer: self.theta[p.offset : p.offset + p.size].reshape(p.shape) for p in self.params}
        args = [self._features[n] if n in self._features else tvm.runtime.tensor(slices[n], self._dev) for n in self._suffix_inputs]
        self.queries += 1
        return self._suffix["main"](*args).numpy()

    def loss_batched(self, thetas: np.ndarray) -> np.ndarray:
        """One suffix call per row: TVM has no perturbation-batched variant here (see batched.py)."""
        saved = self.theta.copy()
        losses = np.array([self.loss(t) for t in thetas])
        self.theta[:] = saved
        return losses

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Outputs at the current θ; rows are processed `batch` at a time (a short tail is padded)."""
        first = next(iter(inputs.values()))
        parts = []
        for i in range(0, len(first), self.batch):
            chunk = {k: v[i : i + self.batch] for k, v in inputs.items()}
            n = len(next(iter(chunk.values())))
            padded = {k: np.concatenate([v, np.repeat(v[-1:], self.batch - n, 0)]) for k, v in chunk.items()}
            self.set_batch(padded, np.zeros(0))
            parts.append(self.outputs()[:n])
        self._labels = None
        return np.concatenate(parts)

    def finetuned_model(self) -> onnx.ModelProto:
        return P.with_values(self.model, self.params, self.theta)
