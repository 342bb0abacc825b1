"""One ResNet builder for basic-block and bottleneck ResNets (He et al. 2016, ImageNet layout).

DP4TL's source model (ResNet-101) and surrogate (ResNet-18) and the Tri-design tracker's backbone
(ResNet-50 under an FPN) are the same family; building them from one place keeps their parameter
counts comparable with torchvision's published ones. This module imports torch at the top, so only
build functions import it (the registry must stay importable without torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# depth -> (block kind, blocks per stage), as in He et al. 2016, Table 1.
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """torchvision's "ResNet v1.5": the stride sits on the 3x3 conv, as in mmdet's pytorch style."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """Stem (7x7/2 conv + 3x3/2 max-pool), four stages, global pool and a linear classifier.

    `features()` returns the four stage outputs (C2..C5) for detectors; `num_classes=0` drops the
    classifier so a backbone carries no unused weights.
    """

    def __init__(self, depth: int, base_width: int = 64, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"no ResNet layout for depth {depth} (have {sorted(RESNET_LAYOUTS)})")
        kind, blocks = RESNET_LAYOUTS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], base_width
        self.stage_channels: list[int] = []
        for i, n in enumerate(blocks):
            width = base_width * 2**i
            layers = []
            for b in range(n):
                layers.append(block(cin, width, 2 if (i > 0 and b == 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*layers))
            self.stage_channels.append(cin)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes) if num_classes else None

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outs.append(x)
        return outs

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled last-stage features (what DP4TL's feature mapping clusters)."""
        return self.features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise RuntimeError("this ResNet was built as a backbone (num_classes=0); call features()")
        return self.fc(self.embed(x))


def build_resnet(depth: int, base_width: int = 64, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """A randomly initialised ResNet of `depth` whose first stage is `base_width` wide."""
    return ResNet(depth, base_width, num_classes, in_channels)


def stage_strides() -> Sequence[int]:
    """Output strides of C2..C5 with respect to the input image."""
    return (4, 8, 16, 32)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (depth 6n+2: 3x3 stem, three stages of n basic blocks, widths w/2w/4w)
    with 1x1 projection shortcuts, as in Cohen et al.'s randomized-smoothing code (ResNet-110)."""

    def __init__(self, depth: int, width: int = 16, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        stages, cin = [], width
        for i in range(3):
            cout = width * 2**i
            stages.append(nn.Sequential(*[BasicBlock(cin if b == 0 else cout, cout, 2 if (i > 0 and b == 0) else 1) for b in range(n)]))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))

