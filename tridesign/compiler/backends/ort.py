"""ONNX Runtime backend: the CPU reference that always exists, so the whole chain runs anywhere.

"Compiling" means letting ORT apply its full graph optimizations once and saving the optimized
model (`model.ort.onnx`), so a deployment loads the optimized graph without re-optimizing.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from tridesign.atomic import write_bytes_atomic
from tridesign.compiler.backends.base import CompileResult, LayerTiming
from tridesign.compiler.options import CompileOptions
from tridesign.errors import TridesignError

OPTIMIZED = "model.ort.onnx"


def _session_options(threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def create_session(path: Path, optimize: bool = True, profile_dir: Path | None = None):
    """An ORT CPU session, with the ORT error turned into one line naming the failing node."""
    import onnxruntime as ort

    opts = _session_options()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if profile_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_dir / "ort_profile")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types from C++
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TridesignError(f"ONNX Runtime cannot load {path.name}: {first}") from None


def _canonical_node_names(path: Path) -> None:
    """Rename the nodes ORT inserted with counter names after their first output, in place.

    Why: ORT's layout transformer names the nodes it adds `<op>` or `<op>_token_<n>` with `n`
    handed out in an order that changes from run to run (onnxruntime 1.32, ResNet-20's
    ReorderOutput nodes), so two compiles of one model saved different model.ort.onnx bytes.
    A node name is only a label (nothing refers to it), and an output name is unique and stable.
    """
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.output and re.fullmatch(rf"{re.escape(node.op_type)}(_token_\d+)?", node.name):
            node.name = f"{node.output[0]}/{node.op_type}"
    write_bytes_atomic(path, model.SerializeToString())


class OrtSession:
    def __init__(self, path: Path):
        self._session = create_session(path)
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(self.output_names, inputs)))


class OrtBackend:
    name = "ort"

    def available(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            return f"onnxruntime is not installed ({err})"
        return None

    def compile(self, onnx_path: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        import onnxruntime as ort

        if options.target != "host":
            raise TridesignError(f"the ort backend compiles for the host only, not {options.target!r}; use --backend tvm")
        opts = _session_options()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(out_dir / OPTIMIZED)
        try:
            ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:
            first = str(err).strip().splitlines()[0]
            raise TridesignError(f"ONNX Runtime cannot compile {onnx_path.name}: {first}") from None
        _canonical_node_names(out_dir / OPTIMIZED)
        notes = []
        if options.tune_trials:
            notes.append("--tune has no effect on the ort backend (ORT has no schedule tuning); nothing was tuned")
        return CompileResult(
            files=[OPTIMIZED],
            target={"providers": ["CPUExecutionProvider"], "graph_optimization_level": "ORT_ENABLE_ALL", "version": ort.__version__},
            notes=notes,
        )

    def load(self, artifact_dir: Path) -> OrtSession:
        return OrtSession(artifact_dir / OPTIMIZED)

    def profile_layers(self, artifact_dir: Path, inputs: dict[str, np.ndarray], repeat: int) -> list[LayerTiming]:
        """Per-node times from ORT's own profiler (median over `repeat` runs, slowest first)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            session = create_session(artifact_dir / OPTIMIZED, profile_dir=Path(tmp))
            names = [o.name for o in session.get_outputs()]
            for _ in range(repeat):
                session.run(names, inputs)
            trace = session.end_profiling()
            with open(trace) as handle:
                events = json.load(handle)
            os.unlink(trace)
        per_node: dict[str, list[float]] = {}
        op_types: dict[str, str] = {}
        for event in events:
            if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                continue
            node = event["name"][: -len("_kernel_time")]
            per_node.setdefault(node, []).append(event["dur"] / 1000.0)
            op_types[node] = event.get("args", {}).get("op_name", "?")
        timings = [LayerTiming(n, op_types[n], float(np.median(t))) for n, t in per_node.items()]
        return sorted(timings, key=lambda t: t.ms, reverse=True)
