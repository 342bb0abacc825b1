"""Accuracy after compression: the one way an artifact, and its uncompressed reference, are scored.

Pruning and int8 are only worth their speed if the model still does its job, and the only honest
answer is the same metric on the same data for both graphs. `compile --eval-data`, `tridesign
evaluate` and codesign's classification points all score here, so their numbers are comparable.

Data is an .npz holding an array per graph input (or `x` for a one-input model) and the targets as
`y`, or in a separate file (`--labels FILE.npy`, `FILE.npz`, `FILE.npz:KEY`); the models trained on
the digits have their held-out split (`heldout`, the default where a model has one). A directory of
images is not read: pack the images into an .npz. Every metric scores the graph's first output:
top1/top5 take (N, classes) scores and integer labels, mse takes target arrays of the output's
shape, iou takes (N, 4) boxes as x1, y1, x2, y2 in both.

The reference is the graph before this compile's --prune/--quantize, run in ONNX Runtime: a
registered model exported from torch without either, a user's ONNX normalized as compile did it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tridesign.artifact import Manifest, OnnxSource, RegisteredSource, TensorSpec, load_npz
from tridesign.board.check import sha256_file
from tridesign.compiler import onnx_io
from tridesign.compiler.backends import get_backend
from tridesign.errors import TridesignError, UsageError
from tridesign.targets import get_target

METRICS = ("top1", "top5", "mse", "iou")
LOWER_IS_BETTER = frozenset({"mse"})
HELD_OUT = "heldout"  # --data / --eval-data value naming a model's own held-out split
DIGITS_MODELS = ("resnet20_digits", "resnet20")  # the models whose task data is the digits split
DEFAULT_BATCH = 256  # rows per call when the graph's batch axis is symbolic
TOP_K = 5

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Spec = TensorSpec | dict[str, Any]


@dataclass(frozen=True)
class EvalRequest:
    """What `compile --eval-data` asks for; `data` None is the model's held-out split."""

    data: str | None = None
    labels: str | None = None
    metric: str = "top1"
    max_drop: float | None = None

    def check(self, flag: str = "--eval-data") -> None:
        """The mistakes found without the model, before minutes of pruning and compiling."""
        if self.metric not in METRICS:
            raise UsageError(f"unknown --metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError(f"--max-accuracy-drop must be >= 0, got {self.max_drop:g}")
        if self.labels is not None and self.data in (None, HELD_OUT):
            raise UsageError("--labels goes with a data file: the held-out split carries its own labels")
        if self.data not in (None, HELD_OUT):
            data_file(self.data, flag)


@dataclass(frozen=True)
class EvalData:
    """Rows to score: an array per graph input (all N rows) and the N targets."""

    inputs: dict[str, np.ndarray]
    targets: np.ndarray
    description: str

    @property
    def samples(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Score:
    value: float
    samples: int
    seconds: float  # wall time of the forward passes


def load_eval_data(data: str | Path | None, labels: str | None, inputs: Sequence[Spec], model: str | None = None,
                   flag: str = "--data") -> EvalData:
    """The rows for `inputs` from `data` (an .npz, or None/`heldout` for `model`'s held-out split),
    checked for names, counts, shapes and dtypes, each mistake one line naming the flag."""
    specs = [spec_dict(s) for s in inputs]
    if data is None or str(data) == HELD_OUT:
        if model not in DIGITS_MODELS:
            raise UsageError(f"{model or 'this model'} has no held-out split here: pass {flag} FILE.npz "
                             "(an array per input, or x, and the labels as y)")
        from tridesign.data.digits import load_digits_split

        split = load_digits_split()
        arrays, targets, where, description = {"x": split.x_test}, split.y_test, f"{flag} {HELD_OUT}", "digits held-out split"
    else:
        path = data_file(data, flag)
        where, description = f"{flag} {path}", str(path)
        arrays = load_npz(path)
        if labels is not None:
            targets = load_labels(labels)
        elif "y" in arrays:
            targets = arrays.pop("y")
        else:
            raise UsageError(f"{where}: no labels: add an array y, or pass --labels FILE.npy")
    return EvalData(_bind(arrays, targets, specs, where), targets, description)


def data_file(data: str | Path, flag: str) -> Path:
    """The data file named, or one line saying why it is not one."""
    path = Path(data)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: a directory of images is not read; pack them into an .npz "
                         "(an array per input, or x, and the labels as y)")
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    return path


def load_labels(text: str) -> np.ndarray:
    """`--labels FILE.npy`, `FILE.npz` (its `y`, or its one array) or `FILE.npz:KEY`."""
    name, sep, key = text.rpartition(":")
    if not (sep and name.endswith(".npz")):
        name, key = text, ""
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"--labels {path}: no such file")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UsageError(f"--labels {path}: not a readable .npy file ({' '.join(str(err).split())})") from None
    arrays = load_npz(path)
    if key or "y" in arrays or len(arrays) == 1:
        chosen = key or ("y" if "y" in arrays else next(iter(arrays)))
        if chosen in arrays:
            return arrays[chosen]
    raise UsageError(f"--labels {text}: name the array as FILE.npz:KEY (it holds {', '.join(sorted(arrays)) or 'nothing'})")


def spec_dict(item: Spec) -> dict[str, Any]:
    """A manifest's TensorSpec or a graph signature's dict, as the dict the checks read."""
    return item.model_dump() if isinstance(item, TensorSpec) else dict(item)


def _bind(arrays: dict[str, np.ndarray], targets: np.ndarray, specs: list[dict[str, Any]], where: str) -> dict[str, np.ndarray]:
    return bind_inputs(arrays, specs, where, rows=(len(targets) if targets.ndim else 0, "the labels"))


def bind_inputs(arrays: dict[str, np.ndarray], specs: Sequence[Spec], where: str,
                rows: tuple[int, str] | None = None) -> dict[str, np.ndarray]:
    """An array per graph input (by name, or `x` for a one-input graph), checked for names, row
    counts (all equal, or `rows`: (count, what counted them)), shapes and dtypes, cast within its kind;
    each mistake one line starting with `where`."""
    specs = [spec_dict(s) for s in specs]
    names = [s["name"] for s in specs]
    if all(n in arrays for n in names):
        chosen = {n: arrays[n] for n in names}
    elif len(names) == 1 and "x" in arrays:
        chosen = {names[0]: arrays["x"]}
    else:
        raise UsageError(f"{where}: needs an array per input ({', '.join(names)})" + (" or x" if len(names) == 1 else "")
                         + f"; it holds {', '.join(sorted(arrays)) or 'nothing'}")
    if rows is None:
        first = chosen[names[0]]
        rows = (len(first) if first.ndim else 0, f"input {names[0]!r}")
    if rows[0] == 0:
        raise UsageError(f"{where}: no samples ({rows[1]}: 0 rows)")
    bound = {}
    for spec in specs:
        name, array = spec["name"], chosen[spec["name"]]
        if array.ndim == 0 or len(array) != rows[0]:
            count = len(array) if array.ndim else 0
            raise UsageError(f"{where}: input {name!r} has {count} rows, {rows[1]} {rows[0]}")
        want = spec["shape"][1:]
        if array.ndim != len(spec["shape"]) or any(isinstance(d, int) and d != got for d, got in zip(want, array.shape[1:])):
            raise UsageError(f"{where}: rows of {name!r} have shape {list(array.shape[1:])}, the model takes {want}")
        dtype = np.dtype(spec["dtype"])
        if _kind(array.dtype) != _kind(dtype):
            raise UsageError(f"{where}: input {name!r} is {array.dtype.name}, the model takes {dtype.name}")
        bound[name] = np.ascontiguousarray(array, dtype=dtype)
    return bound


def _kind(dtype: np.dtype) -> str:
    """float, integer or bool: a cast within a kind keeps the meaning, one across kinds may not."""
    return "f" if dtype.kind == "f" else "b" if dtype.kind == "b" else "i" if dtype.kind in "iu" else dtype.kind


def check_targets(targets: np.ndarray, metric: str, output_shape: Sequence[int | str], where: str) -> None:
    """The targets fit the metric and the first output's shape ((N, classes), (N, 4) boxes, ...);
    symbolic dims are taken on trust until the real output is known."""
    rest = list(output_shape[1:])
    if metric in ("top1", "top5"):
        if targets.ndim != 1 or _kind(targets.dtype) != "i":
            raise UsageError(f"{where}: {metric} takes one integer class per sample; the labels are "
                             f"{targets.dtype.name} of shape {list(targets.shape)}")
        if len(rest) != 1:
            raise UsageError(f"{where}: {metric} scores (N, classes) outputs; the model's first output is {list(output_shape)}")
        classes = rest[0]
        if isinstance(classes, int):
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= classes:
                raise UsageError(f"{where}: labels run {low}..{high}, the model has {classes} classes (0..{classes - 1})")
            if metric == "top5" and classes < TOP_K:
                raise UsageError(f"{where}: top5 needs at least {TOP_K} classes; the model has {classes}")
        return
    if _kind(targets.dtype) == "b":
        raise UsageError(f"{where}: {metric} takes numeric targets, got {targets.dtype.name}")
    if metric == "iou" and (len(rest) != 1 or (isinstance(rest[0], int) and rest[0] != 4)):
        raise UsageError(f"{where}: iou scores (N, 4) boxes; the model's first output is {list(output_shape)}")
    want = [4] if metric == "iou" else rest
    if targets.ndim != len(want) + 1 or any(isinstance(d, int) and d != t for d, t in zip(want, targets.shape[1:])):
        raise UsageError(f"{where}: {metric} targets have rows of shape {list(targets.shape[1:])}, "
                         f"the model's first output {list(output_shape[1:])}")


def metric_value(outputs: np.ndarray, targets: np.ndarray, metric: str) -> float:
    """The metric of the first output over all rows (higher is better except for mse)."""
    if metric == "top1":
        return float((outputs.argmax(1) == targets).mean())
    if metric == "top5":
        # rank of the true class: how many classes score strictly higher than it
        true = np.take_along_axis(outputs, targets[:, None], axis=1)
        return float(((outputs > true).sum(1) < TOP_K).mean())
    if metric == "mse":
        return float(np.mean((outputs.astype(np.float64) - targets) ** 2))
    return float(box_iou(outputs.astype(np.float64), targets.astype(np.float64)).mean())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) x1, y1, x2, y2 boxes; a degenerate pair (no union) scores 0."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    union = _area(a) + _area(b) - w * h
    return np.divide(w * h, union, out=np.zeros_like(union), where=union > 0)


def _area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[:, 2] - box[:, 0], 0, None) * np.clip(box[:, 3] - box[:, 1], 0, None)


def predict(run: Runner, inputs: Sequence[Spec], data: EvalData) -> tuple[np.ndarray, float]:
    """The first output over every row, in batches the graph takes: a fixed batch axis (a TVM
    build) gets that many rows, the last batch padded with zeros and its padding dropped."""
    fixed = {s["shape"][0] for s in map(spec_dict, inputs) if s["shape"] and isinstance(s["shape"][0], int)}
    if len(fixed) > 1:
        raise TridesignError(f"the model's inputs have different fixed batch sizes {sorted(fixed)}")
    pad = bool(fixed)
    batch = fixed.pop() if pad else DEFAULT_BATCH
    chunks, seconds = [], 0.0
    for start in range(0, data.samples, batch):
        feed = {name: array[start:start + batch] for name, array in data.inputs.items()}
        rows = len(next(iter(feed.values())))
        if pad and rows < batch:
            feed = {k: np.concatenate([v, np.zeros((batch - rows, *v.shape[1:]), v.dtype)]) for k, v in feed.items()}
        started = time.perf_counter()
        outputs = run(feed)
        seconds += time.perf_counter() - started
        chunks.append(np.asarray(next(iter(outputs.values())))[:rows])
    return np.concatenate(chunks), seconds


def score(run: Runner, inputs: Sequence[Spec], data: EvalData, metric: str) -> Score:
    """Run every row and score the first output; the targets are checked against the real output."""
    outputs, seconds = predict(run, inputs, data)
    check_targets(data.targets, metric, list(outputs.shape), data.description)
    return Score(metric_value(outputs, data.targets, metric), data.samples, seconds)


def artifact_runner(artifact_dir: Path, manifest: Manifest) -> Runner:
    """The artifact's own backend, loaded here; an artifact built for another machine is refused."""
    if not get_target(manifest.target.name).runs_here:
        raise UsageError(f"{artifact_dir}: built for {manifest.target.name}, which cannot run here; "
                         "evaluate it on that board")
    return get_backend(manifest.backend).load(Path(artifact_dir)).run


def onnx_runner(model: onnx.ModelProto) -> Runner:
    """ONNX Runtime on the CPU, one session for every batch (the reference's engine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own C++ exception types
        raise TridesignError(f"ONNX Runtime cannot load the reference: {' '.join(str(err).split())[:300]}") from None
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(names, feed)))


def accuracy_record(metric: str, data: EvalData, artifact: Score, reference: Score | None,
                    reference_graph: str | None) -> dict[str, Any]:
    """Both numbers and the drop (positive = the artifact is worse, in the metric's units)."""
    drop = None
    if reference is not None:
        drop = artifact.value - reference.value if metric in LOWER_IS_BETTER else reference.value - artifact.value
    return {"metric": metric, "data": data.description, "samples": data.samples, "artifact": artifact.value,
            "reference": None if reference is None else reference.value, "drop": drop, "reference_graph": reference_graph}


def check_drop(record: dict[str, Any], max_drop: float | None) -> None:
    """Refuse an artifact that lost more than `max_drop` (the compile writes nothing)."""
    if max_drop is not None and record["drop"] is not None and record["drop"] > max_drop:
        raise TridesignError(
            f"accuracy drop {record['drop']:.4g} ({record['metric']}: {record['artifact']:.4g} vs uncompressed "
            f"{record['reference']:.4g}) > --max-accuracy-drop {max_drop:g}; nothing was written"
        )


def reference_description(source: RegisteredSource | OnnxSource) -> str:
    """What the reference graph is, for the record."""
    if isinstance(source, RegisteredSource):
        return f"{source.model}:{source.config} exported without pruning or quantization, ONNX Runtime CPU"
    return f"{Path(source.path).name} normalized, without pruning or quantization, ONNX Runtime CPU"


def reference_model(manifest: Manifest) -> tuple[onnx.ModelProto | None, str]:
    """The artifact's uncompressed graph rebuilt from its source, and what it is; (None, why not)
    when it cannot be rebuilt here."""
    source = manifest.source
    if isinstance(source, RegisteredSource):
        import torch

        from tridesign.compiler.export import export_verified
        from tridesign.models.registry import get_model

        spec = get_model(source.model)
        seed, batch = int(manifest.options.get("seed", 0)), int(manifest.options.get("batch", 1))
        torch.manual_seed(seed)
        module = spec.instantiate(source.config)
        model, _ = export_verified(spec, module, source.config, spec.example_inputs(source.config, batch, seed))
        return model, reference_description(source)
    if isinstance(source, OnnxSource):
        path = Path(source.path)
        if not path.is_file():
            return None, f"no reference: the source {path} is gone"
        if sha256_file(path) != source.sha256:
            return None, f"no reference: the source {path} changed since this artifact was compiled"
        shapes = onnx_io.parse_input_shapes(manifest.options.get("input_shapes") or [])
        model = onnx_io.normalize(onnx_io.load_onnx(path), shapes)
        return model, reference_description(source)
    return None, f"no reference: a finetuned artifact's uncompressed model is not rebuilt; evaluate {source.from_} too"


def evaluate_artifact(artifact_dir: Path, data: str | None, labels: str | None, metric: str) -> dict[str, Any]:
    """`tridesign evaluate`: the artifact and its uncompressed reference on the same rows."""
    from tridesign.artifact import open_source
    from tridesign.progress import step

    EvalRequest(data, labels, metric).check("--data")
    opened = open_source(str(artifact_dir), allow=("artifact",))
    if opened.manifest is None:
        raise TridesignError(f"{artifact_dir}: no manifest.json; evaluate takes a compiled artifact")
    manifest = opened.manifest
    model_name = manifest.source.model if isinstance(manifest.source, RegisteredSource) else None
    rows = load_eval_data(data, labels, manifest.inputs, model_name)
    check_targets(rows.targets, metric, manifest.outputs[0].shape, rows.description)
    run = artifact_runner(Path(artifact_dir), manifest)
    with step(f"scoring {opened.label} on {rows.samples} samples ({metric})"):
        artifact = score(run, manifest.inputs, rows, metric)
    with step("rebuilding the uncompressed reference"):
        model, graph = reference_model(manifest)
    reference = None
    if model is not None:
        with step("scoring the uncompressed reference in ONNX Runtime"):
            reference = score(onnx_runner(model), onnx_io.io_signature(model)["inputs"], rows, metric)
    record = accuracy_record(metric, rows, artifact, reference, graph if model is not None else None)
    return {"artifact_dir": str(artifact_dir), **record, "notes": [] if model is not None else [graph]}
