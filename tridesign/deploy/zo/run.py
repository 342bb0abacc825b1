"""Finetune an artifact end to end: read it, run the ZO loop with checkpoints, write a new one.

The checkpoint sits next to the output (`OUT.zo-ckpt.npz`); an interrupted run started again with
the same options resumes from it, and it is deleted once the new artifact is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx

from tridesign.deploy.zo import artifact
from tridesign.deploy.zo.engine_ort import OrtEngine
from tridesign.deploy.zo.finetune import FinetuneConfig, evaluate, finetune, finetuned_model, load_data
from tridesign.deploy.zo.params import data_inputs


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
    from tridesign.atomic import check_writable_parent

    onnx_path, manifest_in = artifact.resolve_input(Path(source))
    out = Path(out) if out is not None else artifact.default_output(Path(source))
    check_writable_parent(out)
    model = onnx.load(str(onnx_path))
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
    artifact.write_artifact(finetuned_model(engine, config, result), Path(source), manifest_in, out, report)
    ckpt.unlink(missing_ok=True)
    return report
