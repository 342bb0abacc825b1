"""Reading the model to finetune and writing the finetuned one as a new, complete artifact.

The input is an artifact directory (its `model.onnx` is the graph that was compiled) or a bare
.onnx file; it is only read. The output goes through the same compile pipeline as any model, with
the input's backend and target, so it is verified and has a manifest like every artifact; the
manifest gains a `finetune` section (settings, queries used, loss/accuracy before and after).
Built in a temporary directory and renamed into place: an interrupt leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import onnx

from tridesign.errors import TridesignError

MODEL_FILE = "model.onnx"


def resolve_input(source: Path) -> tuple[Path, dict[str, Any] | None]:
    """(ONNX path, input manifest or None) for an artifact directory or a bare .onnx file."""
    source = Path(source)
    if source.is_dir():
        from tridesign.compiler.pipeline import load_manifest

        manifest = load_manifest(source)
        model = source / MODEL_FILE
        if not model.is_file():
            raise TridesignError(f"{source}: artifact has no {MODEL_FILE}")
        return model, manifest
    if source.suffix == ".onnx" and source.is_file():
        return source, None
    raise TridesignError(f"{source}: neither an artifact directory nor an .onnx file")


def default_output(source: Path) -> Path:
    source = Path(source)
    stem = source.stem if source.suffix == ".onnx" else source.name
    return source.with_name(f"{stem}-zo")


def write_artifact(
    model: onnx.ModelProto, source: Path, manifest_in: dict[str, Any] | None, out: Path, finetune: dict[str, Any]
) -> dict[str, Any]:
    """Compile the finetuned `model` into the new artifact `out` with the input's backend/target."""
    from tridesign.atomic import MANIFEST, atomic_dir, write_bytes_atomic
    from tridesign.compiler.options import CompileOptions
    from tridesign.compiler.pipeline import compile_artifact

    out = Path(out)
    if out.resolve() == Path(source).resolve():
        raise TridesignError("the output must differ from the input; the input artifact is never modified")
    backend = (manifest_in or {}).get("backend", "ort")
    target = (manifest_in or {}).get("target", {}).get("name", "host")
    with atomic_dir(out) as tmp:
        fd, onnx_tmp = tempfile.mkstemp(prefix="finetuned.", suffix=".onnx", dir=tmp)
        os.close(fd)
        onnx.save(model, onnx_tmp)
        built = tmp / "built"
        manifest = compile_artifact(onnx_tmp, CompileOptions(backend=backend, target=target), built)
        os.unlink(onnx_tmp)
        for entry in built.iterdir():
            os.replace(entry, tmp / entry.name)
        built.rmdir()
        manifest["source"] = {"kind": "zo-finetune", "from": str(Path(source).resolve()), "compiled": manifest["source"]}
        manifest["finetune"] = finetune
        write_bytes_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest
