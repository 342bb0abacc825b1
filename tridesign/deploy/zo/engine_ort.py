"""ONNX Runtime as a ZO training engine: trainable tensors are graph inputs of one reused session.

The selected initializers become inputs (`params.as_inputs`) bound, through I/O binding, to
OrtValues that share memory with slices of one flat float32 vector θ. Perturbing θ in place is
therefore all a query costs: no rebinding, no copy of the weights, no new session. With feature
reuse the prefix runs once per data batch and its activations are bound once too.

A batched loss (`loss_batched`) evaluates k perturbed copies of θ in one run through the
perturbation-batched suffix from `batched.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort

from tridesign.deploy.zo import params as P
from tridesign.deploy.zo.batched import BatchedSuffix
from tridesign.deploy.zo.engine_loss import EngineLoss
from tridesign.deploy.zo.feature_reuse import Split, detach_conv_biases, split_at_trainable

LossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(outputs[..., B, C], labels[B]) -> per-leading-index loss (a 0-d array for a single run)."""


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean softmax cross-entropy over the batch axis (-2), any leading axes kept."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, labels.reshape((1,) * (z.ndim - 2) + (-1, 1)).astype(np.int64), axis=-1)
    return -picked[..., 0].mean(axis=-1)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU session options: no busy-waiting worker threads between runs.

    ZO interleaves engine runs with numpy work (perturbing θ, the loss); spinning ORT workers would
    steal those cycles (and a device's power) while waiting for the next run.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


class OrtEngine(EngineLoss):
    """Loss of a model on one data batch as a function of θ, evaluated by ONNX Runtime."""

    def __init__(
        self,
        model: onnx.ModelProto,
        selector: str,
        output: str | None = None,
        loss: LossFn = cross_entropy,
        reuse_features: bool = True,
        threads: int | None = None,
    ) -> None:
        model = P.materialize_aliases(model)
        self.model = model
        self.params = P.select(model, selector)
        self.theta = P.initial_theta(model, self.params)
        self.output = output or model.graph.output[0].name
        self.loss_fn = loss
        self.opts = session_options(threads)
        self.queries = 0
        trainable = P.as_inputs(model, self.params)
        names = [p.initializer for p in self.params]
        if reuse_features:
            self.split = split_at_trainable(detach_conv_biases(trainable, names), names, [self.output])
        else:
            data = [i.name for i in P.data_inputs(model)]
            self.split = Split(None, trainable, [], data, [self.output])
        self._prefix = None if self.split.prefix is None else self._session(self.split.prefix)
        self._suffix = self._session(self.split.suffix)
        self._binding = self._suffix.io_binding()
        self._param_values = []
        for p in self.params:
            view = self.theta[p.offset : p.offset + p.size].reshape(p.shape)
            value = ort.OrtValue.ortvalue_from_numpy(view)
            self._param_values.append(value)  # keeps the OrtValue alive while it is bound
            self._binding.bind_ortvalue_input(p.initializer, value)
        self._binding.bind_output(self.output, "cpu")
        self._batched = None
        self._labels: np.ndarray | None = None
        self._features: dict[str, np.ndarray] = {}

    def _session(self, model: onnx.ModelProto) -> ort.InferenceSession:
        return ort.InferenceSession(model.SerializeToString(), self.opts, providers=["CPUExecutionProvider"])

    @property
    def dim(self) -> int:
        return self.theta.size

    def set_batch(self, inputs: dict[str, np.ndarray], labels: np.ndarray) -> None:
        """Run the prefix once for this batch and bind its activations for every following query."""
        feed = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        features = {n: feed[n] for n in self.split.passthrough}
        if self._prefix is not None:
            wanted = [i.name for i in self._prefix.get_inputs()]
            features.update(zip(self.split.cut, self._prefix.run(self.split.cut, {k: feed[k] for k in wanted})))
        self._features = {k: np.ascontiguousarray(v) for k, v in features.items()}
        for name, value in self._features.items():
            self._binding.bind_cpu_input(name, value)
        self._binding.bind_output(self.output, "cpu")  # rebound: ORT keeps the last output's shape
        self._labels = np.asarray(labels)

    def outputs(self) -> np.ndarray:
        """The output at the current θ on the bound batch."""
        self._suffix.run_with_iobinding(self._binding)
        self.queries += 1
        return self._binding.copy_outputs_to_cpu()[0]

    def loss_batched(self, thetas: np.ndarray) -> np.ndarray:
        """Losses of k parameter vectors thetas[k, d] on the bound batch, in one engine run."""
        if self._batched is None:
            self._batched = BatchedSuffix(self.split.suffix, self.params, self.output, self.opts)
        out = self._batched.run(self._features, thetas)
        self.queries += len(thetas)
        return np.asarray(self.loss_fn(out, self._labels), dtype=np.float64).reshape(len(thetas))

    def predict(self, inputs: dict[str, np.ndarray], chunk: int = 256) -> np.ndarray:
        """Outputs at the current θ for any number of rows (rebinds the batch; call set_batch after)."""
        first = next(iter(inputs.values()))
        parts = []
        for i in range(0, len(first), chunk):
            self.set_batch({k: v[i : i + chunk] for k, v in inputs.items()}, np.zeros(0))
            parts.append(self.outputs())
        self._labels = None
        return np.concatenate(parts)

    def finetuned_model(self) -> onnx.ModelProto:
        """The original model with the selected initializers replaced by θ (inputs unchanged)."""
        return P.with_values(self.model, self.params, self.theta)
