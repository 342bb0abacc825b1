"""Per-layer feature reuse for CGE (DeepZero): a coordinate of tensor l re-runs only what follows l.

`OrtEngine` already caches everything before the *first* trainable tensor. A CGE coordinate of a
later tensor need not re-run even the trainable layers before it: one base run at the current θ
produces the loss and every tensor's cut activations, and then each perturbed coordinate runs
only the sub-suffix that depends on its own tensor. With the last block and the head selected,
head coordinates cost a Gemm instead of two convolutions.

The sub-suffixes are cut out of the engine's suffix with `split_at_trainable`, one per trainable
tensor; each has its own session and I/O binding (θ slices bound by shared memory, as in the
engine), so a query is still one `run_with_iobinding`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.shape_inference
import onnx.utils
import onnxruntime as ort

from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.zo.estimators import CGEConfig, ZOGradient
from tridesign.deploy.zo.feature_reuse import split_at_trainable


class LayerwiseCGE:
    """CGE on an `OrtEngine`'s bound batch, re-running per coordinate only its tensor's sub-suffix."""

    def __init__(self, engine: OrtEngine) -> None:
        self.engine = engine
        suffix = onnx.shape_inference.infer_shapes(engine.split.suffix)
        graph_inputs = [i.name for i in suffix.graph.input]
        self.splits = [split_at_trainable(suffix, [p.initializer], [engine.output]) for p in engine.params]
        self.extra = sorted({n for s in self.splits for n in s.cut if n not in graph_inputs})
        full = onnx.utils.Extractor(suffix).extract_model(graph_inputs, [engine.output, *self.extra])
        self._full = engine._session(full)
        self._sessions = [engine._session(s.suffix) for s in self.splits]
        self._views = {p.initializer: v for p, v in zip(engine.params, engine._param_values)}

    def _bind(self, session: ort.InferenceSession, values: dict[str, np.ndarray], outputs: list[str]) -> ort.IOBinding:
        binding = session.io_binding()
        for value in session.get_inputs():
            if value.name in self._views:
                binding.bind_ortvalue_input(value.name, self._views[value.name])
            else:
                binding.bind_cpu_input(value.name, values[value.name])
        for name in outputs:
            binding.bind_output(name, "cpu")
        return binding

    def estimate(self, coords: np.ndarray, config: CGEConfig) -> ZOGradient:
        """Same estimate as `estimators.cge(engine.loss, ...)`, with fewer nodes per query."""
        engine, theta, mu = self.engine, self.engine.theta, config.mu
        labels = engine._labels
        full = self._bind(self._full, engine._features, [engine.output, *self.extra])
        self._full.run_with_iobinding(full)
        outs = full.copy_outputs_to_cpu()
        values = {**engine._features, **{n: np.ascontiguousarray(v) for n, v in zip(self.extra, outs[1:])}}
        base = float(engine.loss_fn(outs[0], labels)) if config.difference == "forward" else None
        coords = np.asarray(coords, dtype=np.int64)
        signs = (1.0,) if config.difference == "forward" else (1.0, -1.0)
        results = np.empty((coords.size, len(signs)))
        owner = np.searchsorted([p.offset for p in engine.params], coords, side="right") - 1
        for layer in np.unique(owner):
            session = self._sessions[layer]
            binding = self._bind(session, values, [engine.output])
            for k in np.flatnonzero(owner == layer):
                c = coords[k]
                original = theta[c]
                for j, s in enumerate(signs):
                    theta[c] = original + s * mu
                    session.run_with_iobinding(binding)
                    results[k, j] = engine.loss_fn(binding.copy_outputs_to_cpu()[0], labels)
                theta[c] = original
        engine.queries += results.size + 1
        coeffs = (results[:, 0] - base) / mu if base is not None else (results[:, 0] - results[:, 1]) / (2 * mu)
        loss = base if base is not None else float(results.mean())
        return ZOGradient(d=theta.size, coeffs=coeffs, loss=loss, queries=results.size + (base is not None), coords=coords)
