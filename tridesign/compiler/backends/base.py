"""The one small interface every backend implements (hls4ml / tinygrad style: one file per backend).

A backend turns a verified ONNX file into files inside an artifact directory, loads them back into
something that runs numpy inputs, and can time its layers. End-to-end latency is measured the same
way for every backend (tridesign.compiler.profile), so numbers across backends compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tridesign.compiler.options import CompileOptions


@dataclass
class CompileResult:
    """What a backend tells the manifest about what it built."""

    files: list[str]  # paths relative to the artifact directory
    target: dict[str, Any]  # the concrete target (TVM JSON dict, ORT providers, ...)
    tuned: bool = False  # a tuned schedule was applied to at least one kernel
    tuning: dict[str, Any] = field(default_factory=dict)  # trials, records, kernels tuned, database path
    notes: list[str] = field(default_factory=list)  # anything the user must know (fallbacks, dense layers)
    sparse_layers: list[dict[str, Any]] = field(default_factory=list)  # per pruned layer: ran sparse or dense, and why
    # The input shapes the build fixed (TVM specialises a symbolic batch): the manifest records
    # these instead of the graph's symbolic names, so `run` refuses another batch up front.
    fixed_inputs: list[dict[str, Any]] | None = None


@dataclass
class LayerTiming:
    name: str  # node or kernel name
    op_type: str
    ms: float  # median per call


class Session(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Backend(Protocol):
    name: str

    def available(self) -> str | None:
        """None when the backend can run here, else the reason it cannot (shown to the user)."""

    def compile(self, onnx_path: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        """Build the backend's files into out_dir (a temporary directory the pipeline renames later)."""

    def load(self, artifact_dir: Path) -> Session:
        """Load a built artifact in this process (it must work in a fresh process, too); what to
        load is in the backend's own files, so an artifact being built loads before its manifest exists."""

    def profile_layers(self, artifact_dir: Path, inputs: dict[str, np.ndarray], repeat: int) -> list[LayerTiming]:
        """Per-layer times, slowest first."""
