"""The detector `track` runs: a compiled artifact, built once per (model, options) and cached.

`--model DIR` names an artifact `tridesign compile` built; `--model NAME` (default the trained
`qdtrack_center`, config `track`) is compiled here with the backend and `--prune` asked for, into
the cache (`tridesign.compiler.artifact_cache`), so a second run starts at once. What tracks is therefore
always a compiled, verified artifact, and for `--backend tvm` with dropped patches also the
tile-sparse executor built from the same artifact's ONNX (`kernels.tile_network`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from tridesign.artifact import MODEL_FILE, Manifest, load_manifest, open_source
from tridesign.compiler.backends import get_backend
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.artifact_cache import cached_artifact
from tridesign.errors import UsageError
from tridesign.sparsity_plan import SparsityPlan

DEFAULT_MODEL = "qdtrack_center"
DEFAULT_CONFIG = "track"
INPUTS = ("image", "patch_mask")
OUTPUTS = ("heatmap", "boxes")


@dataclass(frozen=True)
class Detector:
    """A loaded detector: its artifact, the session that runs it and the network's input sizes."""

    artifact: Path
    manifest: Manifest
    session: object  # a backend Session: run(inputs) -> outputs
    image_hw: tuple[int, int]
    mask_hw: tuple[int, int]

    def model(self) -> onnx.ModelProto:
        return onnx.load(str(self.artifact / MODEL_FILE))


def detector_options(backend: str, prune: SparsityPlan | None, finetune_steps: int, config: str,
                     quantize: str | None = None) -> CompileOptions:
    return CompileOptions(backend=backend, prune=prune, finetune_steps=finetune_steps, config=config, quantize=quantize)


def load_detector(model: str | None, backend: str, prune: SparsityPlan | None, finetune_steps: int,
                  config: str | None = None, quantize: str | None = None) -> Detector:
    """Resolve `--model` to a compiled artifact with the detector's inputs and outputs, and load it."""
    name = model or DEFAULT_MODEL
    opened = open_source(name, allow=("registered", "artifact"))
    if opened.kind == "artifact":
        if prune is not None or finetune_steps or quantize:
            raise UsageError(f"{name} is compiled already: --prune, --finetune-steps and --quantize apply when --model names a registered model")
        artifact = opened.artifact_dir
        manifest = load_manifest(artifact)
        if manifest.backend != backend:
            raise UsageError(f"{name} was compiled for {manifest.backend}, not {backend}; pass --backend {manifest.backend}")
    else:
        options = detector_options(backend, prune, finetune_steps, config or DEFAULT_CONFIG, quantize)
        artifact = cached_artifact(name, options)
        manifest = load_manifest(artifact)
    inputs = {t.name: t for t in manifest.inputs}
    outputs = [t.name for t in manifest.outputs]
    if tuple(sorted(inputs)) != tuple(sorted(INPUTS)) or tuple(outputs) != OUTPUTS:
        raise UsageError(f"{name} is not a tracking detector: it needs inputs {list(INPUTS)} and outputs {list(OUTPUTS)} "
                         f"(as qdtrack_center), has {sorted(inputs)} -> {outputs}")
    image, mask = inputs["image"].shape, inputs["patch_mask"].shape
    if not all(isinstance(d, int) for d in (*image[2:], *mask[2:])):
        raise UsageError(f"{name}: the detector's image and patch_mask sizes must be fixed, got {image} and {mask}")
    session = get_backend(manifest.backend).load(artifact)
    return Detector(artifact, manifest, session, (image[2], image[3]), (mask[2], mask[3]))
