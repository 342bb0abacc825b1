"""Reference workloads built with torch and exported to ONNX: ResNet-18/50 and a QDTrack-shaped
detector (ResNet-50 backbone + FPN + RPN head).

The ResNets come from the zoo's builder (tridesign.models.resnet); the FPN + RPN part the paper maps
onto its second FPGA card is written here, shape-faithful to Lin et al. 2017 (FPN) and Ren et al.
2015 (RPN, 3 anchors a location). Weights are random: only shapes matter to a cycle model. Module names (`backbone`, `neck`, `rpn`) become ONNX node
names, which is what pipeline stages match on.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from tridesign.atomic import write_bytes_atomic
from tridesign.compiler.export import torch_to_onnx
from tridesign.hwsim.workload import Workload, load_workload

# name -> (builder kwargs); used by the spec's `calibration.workload`.
CALIBRATION_WORKLOADS = {"qdtrack-r50-1296x720": {"kind": "qdtrack", "height": 720, "width": 1296}}


def _qdtrack_like():
    """Backbone → FPN (P2..P6, 256 ch) → shared RPN head (3x3 conv, 3 anchors) on every level.

    The part of QDTrack the paper maps onto its two FPGA cards (backbone on one, FPN + RPN on the
    other); the backbone is the zoo's ResNet-50. Defined on first use so importing this file does
    not import torch.
    """
    import torch
    from torch import nn

    from tridesign.models.resnet import build_resnet

    class Backbone(nn.Module):
        """Called as a module, so the exported layer names carry the `backbone` scope the preset's
        pipeline stages match on."""

        def __init__(self):
            super().__init__()
            self.resnet = build_resnet(50, num_classes=0)

        def forward(self, x):
            return self.resnet.features(x)

    class QDTrackLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Backbone()
            channels = self.backbone.resnet.stage_channels
            self.neck = nn.ModuleDict({
                "lateral": nn.ModuleList(nn.Conv2d(c, 256, 1) for c in channels),
                "output": nn.ModuleList(nn.Conv2d(256, 256, 3, padding=1) for _ in channels),
            })
            self.rpn = nn.ModuleDict({"conv": nn.Conv2d(256, 256, 3, padding=1), "cls": nn.Conv2d(256, 3, 1),
                                      "reg": nn.Conv2d(256, 12, 1)})

        def forward(self, x):
            feats = self.backbone(x)
            lat = [conv(f) for conv, f in zip(self.neck["lateral"], feats)]
            for i in range(len(lat) - 1, 0, -1):
                lat[i - 1] = lat[i - 1] + nn.functional.interpolate(lat[i], size=lat[i - 1].shape[-2:])
            levels = [conv(p) for conv, p in zip(self.neck["output"], lat)]
            levels.append(nn.functional.max_pool2d(levels[-1], 1, 2))
            outs = []
            for p in levels:
                h = torch.relu(self.rpn["conv"](p))
                outs += [self.rpn["cls"](h), self.rpn["reg"](h)]
            return tuple(outs)

    return QDTrackLike()


def build_model(kind: str, height: int, width: int, depth: int = 18) -> onnx.ModelProto:
    """`resnet` (depth 18/34/50, 1000 classes) or `qdtrack` at batch 1, exported by the compiler's exporter."""
    import numpy as np
    import torch

    from tridesign.models.resnet import build_resnet

    torch.manual_seed(0)
    module = (build_resnet(depth) if kind == "resnet" else _qdtrack_like()).eval()
    return torch_to_onnx(module, {"image": np.zeros((1, 3, height, width), np.float32)}, ("output",))


def build_onnx(kind: str, height: int, width: int, path: Path, depth: int = 18) -> Path:
    """`build_model` written to `path` (atomically)."""
    write_bytes_atomic(path, build_model(kind, height, width, depth).SerializeToString())
    return path


def build_workload(kind: str, height: int, width: int, depth: int = 18) -> Workload:
    """The network as a Workload (shapes from the exported ONNX graph)."""
    name = f"{kind}{depth if kind == 'resnet' else ''}-{width}x{height}"
    return load_workload(build_model(kind, height, width, depth), name)


def calibration_workload(name: str) -> Workload:
    """The reference network an arch spec's `calibration.workload` names (hwsim.calibrate solves on it)."""
    kwargs = CALIBRATION_WORKLOADS[name]
    return build_workload(kwargs["kind"], kwargs["height"], kwargs["width"])
