"""QDTrack's network (Pang et al. 2021) in plain torch: ResNet + FPN + RPN head + RoI box head +
quasi-dense embedding head. No torchvision: RoIAlign is written with Gather and arithmetic, so the
exported graph uses only standard ONNX ops that ONNX Runtime, TVM and TensorRT all take.

Layout follows QDTrack's BDD100K config (mmdet style): FPN 256 channels on C2..C5 with a P6 from
stride-2 subsampling; RPN with 3 anchors per location; Shared2FC box head (1024) with class-specific
regression; embedding head of 4 conv (GroupNorm 32) + 1 fc (1024) + a 256-d embedding. RoIAlign uses a
fixed 2x2 sampling grid per bin (mmdet's adaptive grid has a data-dependent shape) and clamps samples
to the feature map. Proposal selection and NMS are post-processing (`tridesign.models.trimot`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tridesign.models.resnet import build_resnet, stage_strides


@dataclass(frozen=True)
class QDTrackConfig:
    depth: int = 50
    base_width: int = 64
    fpn_channels: int = 256
    num_anchors: int = 3
    num_classes: int = 8
    fc_channels: int = 1024
    embed_convs: int = 4
    embed_channels: int = 256
    gn_groups: int = 32
    roi_size: int = 7
    sampling: int = 2
    canonical_scale: float = 56.0


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.output, laterals)]
        # P6 for the RPN only, as mmdet's FPN without extra convs (max-pool, kernel 1, stride 2).
        return outs + [outs[-1][:, :, ::2, ::2]]


class RPNHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors, 1)
        self.reg = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness logits (B, N) and box deltas (B, N, 4), anchors ordered level, y, x, anchor."""
        scores, deltas = [], []
        for f in feats:
            h = F.relu(self.conv(f))
            b = h.shape[0]
            scores.append(self.cls(h).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.reg(h).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(scores, 1), torch.cat(deltas, 1)


def roi_align_levels(feats: list[torch.Tensor], rois: torch.Tensor, cfg: QDTrackConfig) -> torch.Tensor:
    """Multi-level RoIAlign: (R, 5) rois [batch, x1, y1, x2, y2] in image pixels -> (R, C, S, S).

    Each RoI is pooled from the FPN level its scale selects (mmdet's rule); every level is sampled
    and the right one kept by a mask, which keeps the graph static.
    """
    x1, y1, x2, y2 = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    scale = torch.sqrt((x2 - x1).clamp(min=1e-6) * (y2 - y1).clamp(min=1e-6))
    level = torch.floor(torch.log2(scale / cfg.canonical_scale + 1e-6)).clamp(0, len(feats) - 1)
    out = 0
    for lvl, (feat, stride) in enumerate(zip(feats, stage_strides())):
        pooled = _roi_align(feat, rois, 1.0 / stride, cfg.roi_size, cfg.sampling)
        out = out + pooled * (level == lvl).to(pooled.dtype)[:, None, None, None]
    return out


def _roi_align(feat: torch.Tensor, rois: torch.Tensor, spatial_scale: float, size: int, sampling: int) -> torch.Tensor:
    # Python ints, not traced sizes: the clamp bounds and gather arithmetic become constants in the
    # exported graph (TVM's importer cannot take a Clip bound computed from Shape).
    b, c, h, w = (int(d) for d in feat.shape)
    r = int(rois.shape[0])
    # aligned=True: pixel centres at +0.5, as in mmcv's RoIAlign used by QDTrack.
    x1 = rois[:, 1] * spatial_scale - 0.5
    y1 = rois[:, 2] * spatial_scale - 0.5
    bin_w = (rois[:, 3] * spatial_scale - 0.5 - x1) / size
    bin_h = (rois[:, 4] * spatial_scale - 0.5 - y1) / size
    grid = (torch.arange(size * sampling, dtype=feat.dtype, device=feat.device) + 0.5) / sampling
    xs = (x1[:, None] + grid[None] * bin_w[:, None]).clamp(0, w - 1)  # (R, P)
    ys = (y1[:, None] + grid[None] * bin_h[:, None]).clamp(0, h - 1)
    x0 = torch.floor(xs).clamp(max=max(w - 2, 0))
    y0 = torch.floor(ys).clamp(max=max(h - 2, 0))
    lx, ly = xs - x0, ys - y0
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)
    base = rois[:, 0].long()[:, None, None] * (h * w)
    flat = feat.permute(0, 2, 3, 1).reshape(b * h * w, c)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = base + yi[:, :, None] * w + xi[:, None, :]  # (R, P, P)
        return flat[index.reshape(-1)].reshape(r, yi.shape[1], xi.shape[1], c)

    wy, wx = ly[:, :, None, None], lx[:, None, :, None]
    val = (
        gather(y0i, x0i) * (1 - wy) * (1 - wx)
        + gather(y0i, x1i) * (1 - wy) * wx
        + gather(y1i, x0i) * wy * (1 - wx)
        + gather(y1i, x1i) * wy * wx
    )  # (R, P, P, C)
    val = val.reshape(r, size, sampling, size, sampling, c).mean(dim=(2, 4))
    return val.permute(0, 3, 1, 2)


class BoxHead(nn.Module):
    """Shared2FC box head: class scores (num_classes + background) and class-specific deltas."""

    def __init__(self, cfg: QDTrackConfig):
        super().__init__()
        flat = cfg.fpn_channels * cfg.roi_size**2
        self.fc1 = nn.Linear(flat, cfg.fc_channels)
        self.fc2 = nn.Linear(cfg.fc_channels, cfg.fc_channels)
        self.cls = nn.Linear(cfg.fc_channels, cfg.num_classes + 1)
        self.reg = nn.Linear(cfg.fc_channels, cfg.num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
        return self.cls(x), self.reg(x)


class EmbedHead(nn.Module):
    """Quasi-dense similarity head: convs with GroupNorm, one fc, a linear embedding."""

    def __init__(self, cfg: QDTrackConfig):
        super().__init__()
        ch = cfg.fpn_channels
        self.convs = nn.Sequential(
            *[m for _ in range(cfg.embed_convs) for m in (nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.GroupNorm(cfg.gn_groups, ch), nn.ReLU())]
        )
        self.fc = nn.Linear(ch * cfg.roi_size**2, cfg.fc_channels)
        self.embed = nn.Linear(cfg.fc_channels, cfg.embed_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(F.relu(self.fc(self.convs(x).flatten(1))))


class QDTrackDetector(nn.Module):
    """Image -> FPN levels P2..P6 and RPN outputs (the part that runs before proposal selection)."""

    def __init__(self, cfg: QDTrackConfig):
        super().__init__()
        self.backbone = build_resnet(cfg.depth, cfg.base_width, num_classes=0)
        self.neck = FPN(self.backbone.stage_channels, cfg.fpn_channels)
        self.rpn = RPNHead(cfg.fpn_channels, cfg.num_anchors)

    def forward(self, image: torch.Tensor):
        feats = self.neck(self.backbone.features(image))
        scores, deltas = self.rpn(feats)
        return (scores, deltas, *feats[:4])


class QDTrackHeads(nn.Module):
    """P2..P5 + selected RoIs -> class scores, box deltas and appearance embeddings."""

    def __init__(self, cfg: QDTrackConfig):
        super().__init__()
        self.cfg = cfg
        self.box_head = BoxHead(cfg)
        self.embed_head = EmbedHead(cfg)

    def forward(self, p2, p3, p4, p5, rois):
        pooled = roi_align_levels([p2, p3, p4, p5], rois, self.cfg)
        cls, reg = self.box_head(pooled)
        return cls, reg, self.embed_head(pooled)


class QDTrack(nn.Module):
    """The whole per-frame network for profiling: image + RoIs -> RPN outputs and RoI head outputs."""

    def __init__(self, cfg: QDTrackConfig):
        super().__init__()
        self.detector = QDTrackDetector(cfg)
        self.heads = QDTrackHeads(cfg)

    def forward(self, image: torch.Tensor, rois: torch.Tensor):
        scores, deltas, p2, p3, p4, p5 = self.detector(image)
        return (scores, deltas, *self.heads(p2, p3, p4, p5, rois))


def fpn_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial sizes of P2..P6 for an input of height x width (ResNet stem and stage arithmetic)."""
    h, w = math.ceil(height / 2), math.ceil(width / 2)  # 7x7/2 conv
    h, w = math.ceil(h / 2), math.ceil(w / 2)  # 3x3/2 max-pool
    shapes = [(h, w)]
    for _ in range(3):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        shapes.append((h, w))
    shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes
