"""The tracker's detector: QDTrack's backbone + FPN with a one-stage centre/box head, masked by patches.

QDTrack (`tridesign.models.qdtrack`) is a two-stage detector (RPN, RoIAlign, box head) with a
quasi-dense embedding head; training its two stages and its contrastive embedding does not fit in
minutes on two cores. The tracker therefore keeps QDTrack's ResNet backbone and FPN (the same
modules) and replaces the RPN and RoI heads with a CenterNet-style head on P2 (stride 4): a
heat-map of object centres and, per location, the sub-cell centre offset and log box size.
Association is IoU-based (ByteTrack-style, `tridesign.tracking`), as there is no embedding.

Data sparsity is part of the graph: the second input `patch_mask` (B, 1, H/16, W/16) holds 1 for a
kept patch of 16x16 network-input pixels and 0 for a dropped one. The mask is nearest-resized to
every backbone feature map (x8 for the stem convolution at stride 2, x4 at stride 4, x2 at 8, x1 at
16, every second cell at 32) and multiplies the output of *every* backbone convolution and of the
max-pool, so a dropped region is exactly zero through the whole backbone. That is what the
tile-sparse kernels compute when they skip inactive tiles (they write zeros there), so the ONNX
Runtime run (mask applied, everything computed) and the TVM tile-sparse run (masked tiles neither
loaded nor computed) agree. The FPN and the head run dense.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from tridesign.models.qdtrack import FPN
from tridesign.models.resnet import BasicBlock, Bottleneck, build_resnet

PATCH_PX = 16  # network-input pixels per mask cell; the input's sides must be multiples of 32
OUTPUT_STRIDE = 4  # the head runs on P2


@dataclass(frozen=True)
class CenterConfig:
    depth: int = 18
    base_width: int = 16
    fpn_channels: int = 32
    head_channels: int = 32
    image_hw: tuple[int, int] = (192, 352)  # network input (H, W); HD frames are resized to it

    def mask_hw(self) -> tuple[int, int]:
        return self.image_hw[0] // PATCH_PX, self.image_hw[1] // PATCH_PX


CENTER_CONFIGS = {
    "tiny": CenterConfig(base_width=8, fpn_channels=16, head_channels=16, image_hw=(64, 96)),
    "track": CenterConfig(),
    "paper": CenterConfig(depth=50, base_width=64, fpn_channels=256, head_channels=256, image_hw=(704, 1280)),
}


class MaskCache:
    """The patch mask nearest-resized to each feature-map size, computed once per size per forward."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask
        self.sized: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if (h, w) not in self.sized:
            # torch's "nearest" takes source cell floor(i * in / out): x8..x1 repeat cells, /2 keeps every second.
            self.sized[(h, w)] = F.interpolate(self.mask, size=(h, w), mode="nearest")
        return x * self.sized[(h, w)]


def _block(block: nn.Module, x: torch.Tensor, m: MaskCache) -> torch.Tensor:
    if isinstance(block, BasicBlock):
        out = block.relu(m(block.bn1(block.conv1(x))))
        out = m(block.bn2(block.conv2(out)))
    elif isinstance(block, Bottleneck):
        out = block.relu(m(block.bn1(block.conv1(x))))
        out = block.relu(m(block.bn2(block.conv2(out))))
        out = m(block.bn3(block.conv3(out)))
    else:
        raise TypeError(f"no masked forward for {type(block).__name__}")
    identity = x if isinstance(block.downsample, nn.Identity) else m(block.downsample(x))
    return block.relu(out + identity)


class CenterHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to a centre heat-map (logits) and (dx, dy, log w, log h)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)
        self.heat = nn.Conv2d(hidden, 1, 1)
        self.box = nn.Conv2d(hidden, 4, 1)
        nn.init.constant_(self.heat.bias, -4.6)  # sigmoid ≈ 0.01: CenterNet's prior for rare centres

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv(x))
        return self.heat(h), self.box(h)


class CenterDetector(nn.Module):
    """image (B, 3, H, W) in [0, 1] RGB + patch_mask (B, 1, H/16, W/16) -> heatmap logits, boxes at stride 4."""

    def __init__(self, cfg: CenterConfig):
        super().__init__()
        if cfg.image_hw[0] % 32 or cfg.image_hw[1] % 32:
            raise ValueError(f"input sides must be multiples of 32, got {cfg.image_hw}")
        self.cfg = cfg
        self.backbone = build_resnet(cfg.depth, cfg.base_width, num_classes=0)
        self.neck = FPN(self.backbone.stage_channels, cfg.fpn_channels)
        # Only P2 feeds the head: P3..P5's 3x3 output convs would be dead weight that ONNX export
        # drops, so torch's parameter and MAC counts (and pruning records) would describe layers the
        # deployed graph lacks. The laterals stay: the top-down path needs them. Built first, then
        # cut, so the seeded initialisation of every kept layer is unchanged.
        self.neck.output = self.neck.output[:1]
        self.head = CenterHead(cfg.fpn_channels, cfg.head_channels)

    def features(self, image: torch.Tensor, patch_mask: torch.Tensor) -> list[torch.Tensor]:
        """C2..C5 with every convolution's output masked."""
        net, m = self.backbone, MaskCache(patch_mask)
        x = m(net.maxpool(net.relu(m(net.bn1(net.conv1(image))))))
        outs = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in stage:
                x = _block(block, x, m)
            outs.append(x)
        return outs

    def forward(self, image: torch.Tensor, patch_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p2 = self.neck(self.features(image, patch_mask))[0]
        return self.head(p2)


def center_config(config: str) -> CenterConfig:
    return CENTER_CONFIGS[config]


def build_center_detector(config: str = "track") -> CenterDetector:
    return CenterDetector(center_config(config))


def with_image_hw(cfg: CenterConfig, image_hw: tuple[int, int]) -> CenterConfig:
    return replace(cfg, image_hw=image_hw)
