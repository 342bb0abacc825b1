"""Compiled artifacts of registered models, built once per (model, options) and reused.

`tridesign track` compiles its detector here and `tridesign codesign` every model-space point
(pruned, recovered, quantized), so a point trained once is reused by every later run, search or
track. The key holds the compile options, a YAML plan's rules (its path alone would reuse a stale
artifact after an edit) and the recipe version of the model's trained weights. Concurrent builders
of one key (codesign's parallel workers) wait on a lock file instead of compiling twice.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from tridesign.artifact import MANIFEST_FILE
from tridesign.atomic import file_lock
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact, options_hash
from tridesign.compiler.sparsity.recovery import TASK_DATA
from tridesign.models.digits import cache_dir
from tridesign.progress import stderr


def recipe_version(name: str) -> int:
    """The training-recipe version of a registered model's cached weights (0: not trained here)."""
    if name not in TASK_DATA:
        return 0
    return int(getattr(importlib.import_module(TASK_DATA[name]), "RECIPE_VERSION", 0))


def artifact_path(name: str, options: CompileOptions) -> Path:
    key = options_hash(options)
    if options.prune is not None and options.prune.source is not None:
        key += "-" + hashlib.sha256(repr(options.prune).encode()).hexdigest()[:8]
    return cache_dir() / "compiled" / f"{name}-{options.config}-r{recipe_version(name)}-{key}"


def cached_artifact(name: str, options: CompileOptions) -> Path:
    """Compile registered model `name` with `options` into the cache unless it is there already."""
    path = artifact_path(name, options)
    if (path / MANIFEST_FILE).is_file():
        return path
    with file_lock(path.parent / f".{path.name}.lock"):
        if not (path / MANIFEST_FILE).is_file():
            what = ", ".join(filter(None, [options.backend, f"prune {options.prune}" if options.prune else "",
                                           f"{options.finetune_steps} recovery steps" if options.finetune_steps else "",
                                           options.quantize or ""]))
            stderr.print(f"[yellow]note:[/] compiling {name} ({options.config}; {what}) once; cached in {path}",
                         highlight=False, soft_wrap=True)
            compile_artifact(name, options, path)
    return path
