"""Finetune an artifact end to end: read it, run the ZO loop with checkpoints, write a new one.

The input is an artifact directory (its `model.onnx` is the graph that was compiled) or a bare
.onnx file; it is only read. The finetuned graph goes through the same compile pipeline as any
model, with the input's backend and target, so it is verified and has a manifest like every
artifact; its source records where it was finetuned from, and its `finetune` section the settings,
queries used and loss/accuracy before and after. The checkpoint sits next to the output
(`OUT.zo-ckpt.npz`); an interrupted run started again with the same options resumes from it, and
it is deleted once the new artifact is written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx

from tridesign.artifact import MANIFEST_FILE, MODEL_FILE, FinetunedSource, Manifest, OpenedSource, open_source, write_manifest
from tridesign.atomic import atomic_dir, check_writable_parent
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, evaluate, finetune, finetuned_model, load_data
from tridesign.deploy.zo.params import data_inputs
from tridesign.errors import TridesignError


def checkpoint_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".zo-ckpt.npz")


def finetune_artifact(
    source: Path,
    data: Path,
    config: FinetuneConfig,
    out: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    prompt_pad: int = 0,
) -> dict[str, Any]:
    """ZO-finetune SOURCE (artifact dir or .onnx) on DATA and write the new artifact; return a report.

    With `prompt_pad`, a TVP framepad prompt of that width is put in front of the model first (the
    selector should then be 'prompt.*'); the new artifact carries the tuned prompt in its graph.
    """
    opened = open_source(source, allow=("onnx", "artifact"))
    out = Path(out) if out is not None else default_output(Path(source))
    check_writable_parent(out)
    model = onnx.load(str(opened.onnx_path))
    if prompt_pad:
        from tridesign.deploy.zo.prompts import add_frame_prompt

        model = add_frame_prompt(model, prompt_pad)
    engine = OrtEngine(model, config.selector)
    inputs, labels = load_data(Path(data), [i.name for i in data_inputs(engine.model)])
    before = evaluate(engine, inputs, labels)
    ckpt = checkpoint_path(out)
    result = finetune(engine, inputs, labels, config, checkpoint=ckpt, on_step=on_step)
    after = evaluate(engine, inputs, labels)
    report = {
        "source": str(Path(source)),
        "output": str(out),
        "parameters": [{"name": p.name, "shape": list(p.shape)} for p in engine.params],
        "trainable": engine.dim,
        "config": asdict(config),
        "queries": result.queries,
        "resumed_from_step": result.resumed_from,
        "before": before,
        "after": after,
        "first_batch_loss": result.losses[0] if result.losses else None,
        "last_batch_loss": result.losses[-1] if result.losses else None,
    }
    write_artifact(finetuned_model(engine, config, result), opened, out, report)
    ckpt.unlink(missing_ok=True)
    return report


def default_output(source: Path) -> Path:
    stem = source.stem if source.suffix == ".onnx" else source.name
    return source.with_name(f"{stem}-zo")


def write_artifact(model: onnx.ModelProto, source: OpenedSource, out: Path, finetune: dict[str, Any]) -> Manifest:
    """Compile the finetuned `model` into the new artifact `out` with the input's backend/target.

    Built in a temporary directory and renamed into place: an interrupt leaves nothing behind.
    """
    if out.resolve() == Path(source.text).resolve():
        raise TridesignError("the output must differ from the input; the input artifact is never modified")
    manifest_in = source.manifest
    options = CompileOptions(
        backend=manifest_in.backend if manifest_in else "ort", target=manifest_in.target.name if manifest_in else "host"
    )
    with atomic_dir(out, MANIFEST_FILE) as tmp:
        with tempfile.TemporaryDirectory(dir=tmp) as scratch:
            onnx_tmp = Path(scratch) / "finetuned.onnx"
            onnx.save(model, str(onnx_tmp))
            built = tmp / "built"
            compiled = compile_artifact(str(onnx_tmp), options, built)
        for entry in built.iterdir():
            os.replace(entry, tmp / entry.name)
        built.rmdir()
        # The graph was compiled from a scratch file that is gone now (its random path made two
        # identical runs write different manifests): name the artifact's own model.onnx instead.
        compiled_as = compiled.source.model_copy(update={"path": MODEL_FILE})
        manifest = compiled.model_copy(
            update={"source": FinetunedSource(from_=str(Path(source.text).resolve()), compiled=compiled_as), "finetune": finetune}
        )
        write_manifest(tmp, manifest)
    return manifest
