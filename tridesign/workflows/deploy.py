"""`tridesign deploy`: SOURCE → (compile, unless it is an artifact already) → bundle for a target.

A registered model or an .onnx is compiled first with the options `compile` takes, for the
target (the CLI picks the TVM backend for a board, whose aarch64 + CUDA module goes in the bundle —
a Jetson builds its TensorRT engine from the bundle's ONNX —, and ONNX Runtime for `host` unless
`--backend tvm`).
An artifact directory is bundled as it is, and must have been built for the target asked for.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from tridesign.artifact import MODEL_FILE, Manifest, open_source
from tridesign.atomic import check_writable_parent
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.sparsity.prune_fns import tensorrt_2to4_ready
from tridesign.deploy.bundle import pack
from tridesign.errors import UsageError
from tridesign.targets import get_target


def deploy(source: str, options: CompileOptions, out: Path, as_dir: bool = False) -> dict[str, Any]:
    """Bundle SOURCE for `options.target` into `out`; return bundle.json's content."""
    out = Path(out)
    check_writable_parent(out)
    spec = get_target(options.target)
    opened = open_source(source)
    if opened.kind == "artifact":
        manifest = opened.manifest
        if manifest is None:
            raise UsageError(f"{source}: an artifact directory without manifest.json cannot be bundled")
        if get_target(manifest.target.name).name != spec.name:
            raise UsageError(f"{source} was compiled for {manifest.target.name}, not {spec.name}; compile it for {spec.name} or pass the model")
        return pack(opened.artifact_dir, out, as_dir, has_2to4_weights(manifest, opened.artifact_dir / MODEL_FILE))
    with tempfile.TemporaryDirectory(dir=out.resolve().parent, prefix=f".{out.name}.build.") as scratch:
        artifact = Path(scratch) / "artifact"
        manifest = compile_artifact(source, options, artifact)
        return pack(artifact, out, as_dir, has_2to4_weights(manifest, artifact / MODEL_FILE))


def has_2to4_weights(manifest: Manifest, model_path: Path) -> bool:
    """Whether TensorRT's sparse weights can pay: a weight pruned nm:2:4 in the tensor cores' layout
    (M consecutive input channels at each kernel position)."""
    pruned = {name for name, record in manifest.weight_sparsity.items() if record.pattern == "nm:2:4"}
    if not pruned:
        return False
    model = onnx.load(str(model_path))
    return any(tensorrt_2to4_ready(numpy_helper.to_array(init)) for init in model.graph.initializer if init.name in pruned)
