"""Reference workloads for the simulator, exported by the compiler's exporter.

Two kinds. ResNets at any input size (`build_workload`), from the zoo's builder
(tridesign.models.resnet), for speed benchmarks and tests where only shapes matter. And the network
an arch spec is calibrated on (`calibration_workload`): a registered model of the zoo named
`MODEL:CONFIG` in the spec (the tri-design preset names `qdtrack_detector:paper`), exported at
batch 1 with the same verified export `tridesign simulate MODEL --config CONFIG` uses, so the
calibrated time holds for the network users simulate, and its node names are the ones the
preset's pipeline stages match.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from tridesign.atomic import write_bytes_atomic
from tridesign.compiler.export import export_model, torch_to_onnx
from tridesign.hwsim.workload import Workload, load_workload


def build_model(depth: int, height: int, width: int) -> onnx.ModelProto:
    """A ResNet (depth 18/34/50, 1000 classes, random weights) at batch 1, exported by the compiler's exporter."""
    import numpy as np
    import torch

    from tridesign.models.resnet import build_resnet

    torch.manual_seed(0)
    module = build_resnet(depth).eval()
    return torch_to_onnx(module, {"image": np.zeros((1, 3, height, width), np.float32)}, ("output",))


def build_onnx(depth: int, height: int, width: int, path: Path) -> Path:
    """`build_model` written to `path` (atomically)."""
    write_bytes_atomic(path, build_model(depth, height, width).SerializeToString())
    return path


def build_workload(depth: int, height: int, width: int) -> Workload:
    """The ResNet as a Workload (shapes from the exported ONNX graph)."""
    return load_workload(build_model(depth, height, width), f"resnet{depth}-{width}x{height}")


def calibration_workload(name: str) -> Workload:
    """The network an arch spec's `calibration.workload` names (`MODEL:CONFIG`), exported at batch 1
    and verified against torch, as `tridesign simulate MODEL --config CONFIG` does (hwsim.calibrate
    solves on it; the paper config of qdtrack_detector takes ~15 s and ~1.5 GB here)."""
    model, _, config = name.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}.onnx"
        export_model(model, config, path)
        return load_workload(path, name=name)
