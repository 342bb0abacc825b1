"""Reference workloads built with torch and exported to ONNX: ResNet-18/50 and a QDTrack-shaped
detector (ResNet-50 backbone + FPN + RPN head).

torchvision cannot be installed next to this torch, so the few architectures the simulator is
benchmarked and calibrated on are written here, shape-faithful to the published ones (He et al.
2016; Lin et al. 2017 FPN; Ren et al. 2015 RPN with 3 anchors a location). Weights are random:
only shapes matter to a cycle model. Module names (`backbone`, `neck`, `rpn`) become ONNX node
names, which is what pipeline stages match on.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx

from tridesign.hwsim.workload import Workload, load_workload

BLOCKS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}
# name -> (builder kwargs); used by the spec's `calibration.workload`.
CALIBRATION_WORKLOADS = {"qdtrack-r50-1296x720": {"kind": "qdtrack", "height": 720, "width": 1296}}


def _modules():
    """Torch module classes, defined on first use so importing this file does not import torch."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

    class Block(nn.Module):
        def __init__(self, kind: str, cin: int, width: int, stride: int):
            super().__init__()
            cout = width * (4 if kind == "bottleneck" else 1)
            if kind == "basic":
                self.body = nn.Sequential(conv_bn(cin, width, 3, stride), nn.ReLU(), conv_bn(width, width, 3))
            else:
                self.body = nn.Sequential(conv_bn(cin, width, 1), nn.ReLU(), conv_bn(width, width, 3, stride),
                                          nn.ReLU(), conv_bn(width, cout, 1))
            self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
            self.out_channels = cout

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    class ResNet(nn.Module):
        def __init__(self, depth: int, classes: int | None):
            super().__init__()
            kind, counts = BLOCKS[depth]
            self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            stages, cin = [], 64
            for i, count in enumerate(counts):
                blocks = []
                for j in range(count):
                    block = Block(kind, cin, 64 * 2**i, 2 if j == 0 and i > 0 else 1)
                    blocks.append(block)
                    cin = block.out_channels
                stages.append(nn.Sequential(*blocks))
            self.stages = nn.ModuleList(stages)
            self.channels = [s[-1].out_channels for s in stages]
            self.fc = nn.Linear(cin, classes) if classes else None

        def forward(self, x):
            x = self.stem(x)
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            if self.fc is None:
                return feats
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    class QDTrackLike(nn.Module):
        """Backbone → FPN (P2..P6, 256 ch) → shared RPN head (3x3 conv, 3 anchors) on every level."""

        def __init__(self):
            super().__init__()
            self.backbone = ResNet(50, None)
            self.neck = nn.ModuleDict({
                "lateral": nn.ModuleList(nn.Conv2d(c, 256, 1) for c in self.backbone.channels),
                "output": nn.ModuleList(nn.Conv2d(256, 256, 3, padding=1) for _ in self.backbone.channels),
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

    return ResNet, QDTrackLike


def build_onnx(kind: str, height: int, width: int, path: Path, depth: int = 18) -> Path:
    """Export `resnet` (depth 18/34/50, 1000 classes) or `qdtrack` at batch 1 to `path` (atomic)."""
    import torch

    ResNet, QDTrackLike = _modules()
    torch.manual_seed(0)
    module = (ResNet(depth, 1000) if kind == "resnet" else QDTrackLike()).eval()
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(module, (torch.zeros(1, 3, height, width),), str(tmp), input_names=["image"],
                          opset_version=17, do_constant_folding=True, dynamo=False)
    tmp.replace(path)
    return path


def build_workload(kind: str, height: int, width: int, depth: int = 18) -> Workload:
    """Export to a temporary file and read it back as a Workload (shapes from the ONNX graph)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = build_onnx(kind, height, width, Path(tmp) / f"{kind}.onnx", depth)
        model = onnx.load(str(path))
    name = f"{kind}{depth if kind == 'resnet' else ''}-{width}x{height}"
    return load_workload(model, name)


def calibration_workload(name: str) -> Workload:
    kwargs = CALIBRATION_WORKLOADS[name]
    return build_workload(kwargs["kind"], kwargs["height"], kwargs["width"])
