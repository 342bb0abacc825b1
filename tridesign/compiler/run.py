"""`tridesign run`: an artifact on a user's inputs, checked against what its manifest declares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tridesign.artifact import load_manifest
from tridesign.compiler.backends import get_backend
from tridesign.errors import UsageError


def run_artifact(artifact_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an artifact on a user's inputs, checked against the manifest's names, shapes and dtypes."""
    manifest = load_manifest(artifact_dir)
    expected = {item.name: item for item in manifest.inputs}
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(set(inputs) - set(expected))
    if missing or extra:
        raise UsageError(
            f"inputs must be exactly {sorted(expected)}" + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else "")
        )
    for name, item in expected.items():
        array = inputs[name]
        if array.dtype.name != item.dtype:
            raise UsageError(f"input {name!r} has dtype {array.dtype.name}, expected {item.dtype}")
        fixed = [(i, d) for i, d in enumerate(item.shape) if isinstance(d, int)]
        if array.ndim != len(item.shape) or any(array.shape[i] != d for i, d in fixed):
            raise UsageError(f"input {name!r} has shape {list(array.shape)}, expected {item.shape}")
    return get_backend(manifest.backend).load(Path(artifact_dir)).run(inputs)
