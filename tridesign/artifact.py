"""The artifact format: what a compiled model directory holds, its manifest, and how to open a SOURCE.

Every command that takes "a registered model name, an `.onnx` file or an artifact directory" opens
it through `open_source`, and every writer and reader of an artifact uses the file names and the
`Manifest` type defined here, so the deployment, FPGA and video work read one format.

Layout of an artifact directory (built in a temporary sibling and renamed into place, see atomic.py):

- ``model.onnx``             the verified graph that was compiled (QDQ when int8), with its annotations
- ``model.fp32.onnx``        the float graph before quantization (int8 artifacts only)
- ``inputs.npz``             the verification inputs
- ``reference_outputs.npz``  ONNX Runtime's outputs on them (what every backend is checked against)
- backend files              e.g. ``module.so`` + ``tvm_io.json`` (+ ``tuning/``) for TVM
- ``manifest.json``          the typed `Manifest` below

A `tridesign track` output directory is a SOURCE too (for `simulate`): ``summary.json`` with
``"kind": "tridesign-track"`` and ``detector.onnx``, the detector's graph carrying the data sparsity
measured on the video in its ``tridesign.data_sparsity`` annotation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tridesign.annotations import WeightSparsity
from tridesign.atomic import write_text_atomic
from tridesign.board import tvm_module
from tridesign.board.check import BoardError, load_arrays
from tridesign.errors import TridesignError, UsageError

MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"
INPUTS_FILE = "inputs.npz"
REFERENCE_FILE = "reference_outputs.npz"
# Input/output names in call order, so a TVM module runs without the ONNX file; named where the
# board reads it (tridesign/board ships inside bundles and imports nothing from here).
TVM_IO_FILE = tvm_module.IO_FILE
MANIFEST_FILE = "manifest.json"
TUNING_DIR = "tuning"  # the tuning records a TVM build saw, copied so the build can be reproduced

FORMAT = "tridesign-artifact/1"

# A `tridesign track` output directory: what `simulate` reads from it.
TRACK_SUMMARY = "summary.json"
TRACK_MODEL = "detector.onnx"
TRACK_KIND = "tridesign-track"  # summary.json's "kind"


class _Record(BaseModel):
    """Typed and closed: a key the format does not define is an error, not silently carried along.

    Written with the keys that were given (`exclude_unset`), so a manifest read from disk writes
    back byte for byte; `ALWAYS_WRITTEN` names the defaulted keys every file must still carry.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    ALWAYS_WRITTEN: ClassVar[frozenset[str]] = frozenset()

    def model_post_init(self, context: Any) -> None:
        self.__pydantic_fields_set__.update(self.ALWAYS_WRITTEN)


class TensorSpec(_Record):
    """One graph input or output: symbolic dimensions stay their names (`batch`), '?' when unnamed."""

    name: str
    shape: list[int | str]
    dtype: str


class RegisteredSource(_Record):
    """A model of the zoo, built in torch and exported (and verified against torch) here."""

    ALWAYS_WRITTEN = frozenset({"kind"})

    kind: Literal["registered"] = "registered"
    model: str
    project: str
    config: str
    sha256: str  # of the exported ONNX bytes, before quantization
    export: dict[str, Any]  # torch vs ONNX Runtime: tolerance, errors, passed (compiler.export.ExportReport)
    sparsity: dict[str, Any] | None = None  # pruning summary (compiler.sparsity.PruneReport.summary)
    recovery: dict[str, Any] | None = None  # first-order recovery after pruning


class OnnxSource(_Record):
    """An ONNX file a user brought, normalized (opset upgrade, folding, shape inference)."""

    ALWAYS_WRITTEN = frozenset({"kind"})

    kind: Literal["onnx"] = "onnx"
    path: str
    sha256: str  # of the file as given
    opset_in: int
    sparsity: dict[str, Any] | None = None


class FinetunedSource(_Record):
    """A model finetuned on the device side (zeroth-order) and compiled again."""

    ALWAYS_WRITTEN = frozenset({"kind"})

    kind: Literal["zo-finetune"] = "zo-finetune"
    from_: str = Field(alias="from")  # the artifact or ONNX file it was finetuned from
    compiled: "Source"  # what the finetuned graph was compiled as


Source = Annotated[Union[RegisteredSource, OnnxSource, FinetunedSource], Field(discriminator="kind")]
FinetunedSource.model_rebuild()


class TargetRecord(_Record):
    """The named target and what the backend built for it (TVM JSON, or ORT's providers)."""

    name: str
    tvm: dict[str, Any] | None = None
    cross_compiler: str | None = None
    providers: list[str] | None = None
    graph_optimization_level: str | None = None
    version: str | None = None


class Verification(_Record):
    """The compiled artifact against ONNX Runtime on the same graph; `passed` is None where the
    artifact cannot run on this machine (`skipped` says why)."""

    passed: bool | None
    reference: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    tolerance: float | None = None
    rule: str | None = None
    skipped: str | None = None
    # compile --verify-inputs: data, samples, batches, passed, worst errors and tolerance over its batches
    user_inputs: dict[str, Any] | None = None


class Manifest(_Record):
    """What an artifact is: where it came from, how it was built, for what, and whether it was verified.

    Written once, when the artifact is complete (the ZO finetuner writes a new artifact with its
    own manifest rather than editing one). Manifests written before this type existed have the
    same keys and load unchanged; a key that is not defined here is refused with its name.

    Reproducible: building the same source with the same options and seeds again writes the same
    bytes, this manifest included, except the wall-clock fields: `created` and the durations, i.e.
    `compile_seconds` and any key ending in `_s` (TVM's `tuning.build_s`). Tuning (`--tune`) picks
    schedules by measured time, so what it adds is not reproducible; builds from one database are.
    tests/test_reproducibility.py checks export, compile (ORT; untuned TVM, slow), simulate, finetune.
    """

    ALWAYS_WRITTEN = frozenset({"format"})

    format: Literal["tridesign-artifact/1"] = FORMAT
    created: str  # UTC, ISO 8601
    source: Source
    backend: str
    target: TargetRecord
    options: dict[str, Any]  # the CompileOptions it was built with, as given
    config_hash: str
    files: list[str]  # every file of the artifact, relative to its directory
    tuned: bool
    tuning: dict[str, Any]  # the backend's build report (TVM: database, kernels tuned, build time, ...)
    notes: list[str]  # everything the user must know (fallbacks, untuned kernels, not verified here)
    compile_seconds: float
    quantization: dict[str, Any] | None = None  # int8: scheme, calibration, fp32 vs int8 (compiler.quantize)
    versions: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    weight_sparsity: dict[str, WeightSparsity] = {}  # the same records as in model.onnx
    sparse_layers: list[dict[str, Any]] = []  # per pruned layer: ran sparse or dense, and why
    verification: Verification
    finetune: dict[str, Any] | None = None  # zeroth-order finetuning: settings, queries, before/after
    # compile --eval-data: metric, data, samples, artifact vs uncompressed reference, drop (compiler.evaluate)
    accuracy: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The JSON form, keys as given: a manifest read from disk is written back unchanged."""
        return self.model_dump_json(indent=2, by_alias=True, exclude_unset=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def write_manifest(artifact_dir: Path, manifest: Manifest) -> None:
    write_text_atomic(Path(artifact_dir) / MANIFEST_FILE, manifest.to_json())


def load_manifest(artifact_dir: Path) -> Manifest:
    """Read an artifact's manifest with one-line errors for a path that is not an artifact."""
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST_FILE
    if not artifact_dir.is_dir():
        raise TridesignError(f"{artifact_dir}: not an artifact directory (run `tridesign compile` first)")
    if not path.is_file():
        raise TridesignError(f"{artifact_dir}: no {MANIFEST_FILE}; not a tridesign artifact")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" ({err.msg} at line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise TridesignError(f"{path}: corrupt manifest{where}") from None
    return parse_manifest(data, path)


def parse_manifest(data: Any, where: Path | str = MANIFEST_FILE) -> Manifest:
    """A manifest from its JSON form; the first problem becomes one line naming the key."""
    if not isinstance(data, dict):
        raise TridesignError(f"{where}: corrupt manifest (a JSON object expected, got {type(data).__name__})")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise TridesignError(f"{where}: invalid manifest: {key}: {first['msg']}") from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays by name from an .npz (an artifact's inputs and reference outputs, a user's --input),
    read fully, never unpickled; a missing or unreadable file is one line."""
    path = Path(path)
    if not path.is_file():
        raise TridesignError(f"{path}: no such file")
    try:
        return load_arrays(path)
    except BoardError as err:
        raise TridesignError(str(err)) from None


@dataclass(frozen=True)
class OpenedSource:
    """What a SOURCE argument names: a registered model, an ONNX file, an artifact directory, or a
    `tridesign track` output directory (`onnx_path` is its detector.onnx).

    Only the name is checked for a registered model (the caller builds it: exporting needs torch,
    which the contracts must not import); files and directories are checked here, with one line.
    """

    kind: Literal["registered", "onnx", "artifact", "track"]
    text: str
    onnx_path: Path | None = None  # the .onnx file, or the artifact's model.onnx
    artifact_dir: Path | None = None
    manifest: Manifest | None = None  # None for a bare .onnx and for a directory that only holds model.onnx

    @property
    def label(self) -> str:
        """A short name for reports: the model name, the file's stem or the directory's name."""
        if self.artifact_dir is not None:
            return self.artifact_dir.name
        if self.kind == "track":
            return Path(self.text).name
        return self.onnx_path.stem if self.onnx_path is not None else self.text


def open_source(text: str | Path, allow: tuple[str, ...] = ("registered", "onnx", "artifact")) -> OpenedSource:
    """Resolve SOURCE the one way every command does; refuse kinds the command cannot take.

    A directory is an artifact (it must hold model.onnx; its manifest is read when present) or a
    track output (summary.json of kind tridesign-track, and detector.onnx; only where `allow` names
    "track"), an existing file or a name ending in `.onnx` is an ONNX file, anything else is a
    model name.
    """
    path = Path(text)
    if path.is_dir():
        opened = _open_directory(path)
    elif path.suffix == ".onnx" or path.exists():
        if not path.is_file():
            raise TridesignError(f"{path}: no such file")
        opened = OpenedSource("onnx", str(text), onnx_path=path)
    else:
        opened = OpenedSource("registered", str(text))
    if opened.kind not in allow:
        kinds = {"registered": "a registered model name", "onnx": "an .onnx file", "artifact": "an artifact directory",
                 "track": "a track output directory"}
        got = "no such file or directory" if opened.kind == "registered" else f"got {kinds[opened.kind]}"
        raise UsageError(f"{text}: {got} (expected {' or '.join(kinds[k] for k in allow)})")
    return opened


def _open_directory(path: Path) -> OpenedSource:
    if not (path / MODEL_FILE).is_file():
        if _is_track_output(path):
            if not (path / TRACK_MODEL).is_file():
                raise TridesignError(f"{path}: track output without {TRACK_MODEL}; rerun `tridesign track` to record it")
            return OpenedSource("track", str(path), onnx_path=path / TRACK_MODEL)
        raise TridesignError(f"{path}: directory has no {MODEL_FILE}; not a tridesign artifact")
    manifest = load_manifest(path) if (path / MANIFEST_FILE).exists() else None
    return OpenedSource("artifact", str(path), onnx_path=path / MODEL_FILE, artifact_dir=path, manifest=manifest)


def _is_track_output(path: Path) -> bool:
    """Whether `path` holds a track summary; another command's summary.json (the demo's) is not one."""
    summary = path / TRACK_SUMMARY
    if not summary.is_file():
        return False
    try:
        data = json.loads(summary.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TridesignError(f"{summary}: corrupt {TRACK_SUMMARY} (not JSON)") from None
    return isinstance(data, dict) and data.get("kind") == TRACK_KIND
