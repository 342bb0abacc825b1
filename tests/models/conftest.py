"""Per-session cache of each tiny model's ORT artifact, shared by the zoo and chain tests.

Exporting is the slow step for the transformers/diffusers models, so every model is exported and
verified against torch once (inside `compile_artifact`), and the TVM test reuses its ONNX file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ort_artifact_for(tmp_path_factory) -> Callable[[str], Path]:
    from tridesign.compiler.options import CompileOptions
    from tridesign.compiler.pipeline import compile_artifact

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            out = tmp_path_factory.mktemp("zoo") / f"{name}-ort"
            compile_artifact(name, CompileOptions(backend="ort", config="tiny"), out)
            built[name] = out
        return built[name]

    return get
