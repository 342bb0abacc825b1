"""Tri-design MOT (ASP-DAC'23): QDTrack on HD driving video, and its proposal post-processing.

The deployed graph is the network only: backbone + FPN + RPN (`qdtrack_detector`, on the first
FPGA card in the paper's pipeline) and the RoI box and embedding heads (`qdtrack_heads`). Proposal
selection between them (anchor decoding, top-k, NMS) runs here in numpy, as it does on the embedded
back end. `qdtrack` is the whole per-frame network for profiling and simulation, with the RoIs as
an input. Paper config: ResNet-50 + FPN on 1296x720 BDD100K frames, 8 classes, 1000 proposals.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tridesign.models.registry import ModelSpec, register

TRIMOT_CONFIGS = {
    "tiny": {"image_hw": (64, 64), "rois": 4, "net": {"depth": 18, "base_width": 8, "fpn_channels": 16, "fc_channels": 32, "embed_convs": 1, "embed_channels": 16, "gn_groups": 4}},
    "paper": {"image_hw": (720, 1296), "rois": 1000, "net": {}},
}
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SCALE = 8  # anchor side = 8 x stride, strides 4..64 (mmdet's RPN defaults in QDTrack)
RPN_STRIDES = (4, 8, 16, 32, 64)


def net_config(config: str):
    from tridesign.models.qdtrack import QDTrackConfig

    return replace(QDTrackConfig(), **TRIMOT_CONFIGS[config]["net"])


def build_qdtrack(config: str = "paper"):
    from tridesign.models.qdtrack import QDTrack

    return QDTrack(net_config(config))


def build_detector(config: str = "paper"):
    from tridesign.models.qdtrack import QDTrackDetector

    return QDTrackDetector(net_config(config))


def build_heads(config: str = "paper"):
    from tridesign.models.qdtrack import QDTrackHeads

    return QDTrackHeads(net_config(config))


def anchors(image_hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) anchors x1y1x2y2 in the RPN's output order (level, y, x, anchor)."""
    from tridesign.models.qdtrack import fpn_shapes

    out = []
    for (h, w), stride in zip(fpn_shapes(*image_hw), RPN_STRIDES):
        side = ANCHOR_SCALE * stride
        hr = np.sqrt(np.asarray(ANCHOR_RATIOS))
        half = np.stack([-side / hr, -side * hr, side / hr, side * hr], axis=1) / 2  # (A, 4)
        ys, xs = np.meshgrid(np.arange(h) * stride, np.arange(w) * stride, indexing="ij")
        centres = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4)
        out.append((centres + half[None]).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode(anchor_boxes: np.ndarray, deltas: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Standard (dx, dy, dw, dh) box decoding, clipped to the image."""
    w = anchor_boxes[:, 2] - anchor_boxes[:, 0]
    h = anchor_boxes[:, 3] - anchor_boxes[:, 1]
    cx = anchor_boxes[:, 0] + 0.5 * w + deltas[:, 0] * w
    cy = anchor_boxes[:, 1] + 0.5 * h + deltas[:, 1] * h
    clamp = np.log(1000.0 / 16)
    nw = w * np.exp(np.minimum(deltas[:, 2], clamp))
    nh = h * np.exp(np.minimum(deltas[:, 3], clamp))
    boxes = np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], axis=1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image_hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image_hw[0])
    return boxes


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def select_proposals(
    rpn_scores: np.ndarray, rpn_deltas: np.ndarray, image_hw: tuple[int, int],
    pre_nms: int = 2000, post_nms: int = 1000, iou_threshold: float = 0.7,
) -> np.ndarray:
    """RPN outputs of a batch -> (R, 5) RoIs [batch, x1, y1, x2, y2] for the heads (mmdet-style)."""
    base = anchors(image_hw)
    rois = []
    for b in range(rpn_scores.shape[0]):
        top = np.argsort(-rpn_scores[b], kind="stable")[:pre_nms]
        boxes = decode(base[top], rpn_deltas[b, top], image_hw)
        keep = nms(boxes, rpn_scores[b, top], iou_threshold)[:post_nms]
        rois.append(np.concatenate([np.full((keep.size, 1), b, np.float32), boxes[keep]], axis=1))
    return np.concatenate(rois).astype(np.float32)


def _random_rois(rng: np.random.Generator, count: int, batch: int, image_hw: tuple[int, int]) -> np.ndarray:
    h, w = image_hw
    xy = rng.random((count, 2)) * [w * 0.7, h * 0.7]
    wh = (0.1 + 0.2 * rng.random((count, 2))) * [w, h]
    idx = (np.arange(count) % batch)[:, None]
    return np.concatenate([idx, xy, xy + wh], axis=1).astype(np.float32)


def _qdtrack_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = TRIMOT_CONFIGS[config]
    image = rng.standard_normal((batch, 3, *c["image_hw"]), dtype=np.float32)
    return {"image": image, "rois": _random_rois(rng, c["rois"], batch, c["image_hw"])}


def _detector_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    return {"image": _qdtrack_inputs(config, batch, seed)["image"]}


def _heads_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    from tridesign.models.qdtrack import fpn_shapes

    rng = np.random.default_rng(seed)
    c = TRIMOT_CONFIGS[config]
    ch = net_config(config).fpn_channels
    feats = {f"p{i + 2}": rng.standard_normal((batch, ch, h, w), dtype=np.float32) for i, (h, w) in enumerate(fpn_shapes(*c["image_hw"])[:4])}
    return {**feats, "rois": _random_rois(rng, c["rois"], batch, c["image_hw"])}


_PROJECT = "Tri-design MOT"
_SOURCE = "reference count of QDTrack's BDD100K config (Pang et al. CVPR'21; SysCV/qdtrack), R-50 from He et al. 2016"
_PARTS = {"detector": "qdtrack_detector", "heads": "qdtrack_heads"}
_DETECTOR_PARAMS = 27_446_351  # ResNet-50 without fc 23,508,032 + FPN 3,344,384 + RPN head 593,935
_HEADS_PARAMS = 29_407_529  # box head 13,937,705 + embedding head 15,469,824

register(
    ModelSpec(
        name="qdtrack",
        project=_PROJECT,
        task="multi-object tracking network per frame (image + RoIs -> RPN, boxes, embeddings)",
        build=build_qdtrack,
        example_inputs=_qdtrack_inputs,
        output_names=("rpn_scores", "rpn_deltas", "cls_scores", "bbox_deltas", "track_embeds"),
        published_params=_DETECTOR_PARAMS + _HEADS_PARAMS,
        published_source=_SOURCE,
        params_source="derived",
        parts=_PARTS,
        notes={"post_processing": "tridesign.models.trimot.select_proposals (numpy anchors, decode, NMS)"},
    )
)
register(
    ModelSpec(
        name="qdtrack_detector",
        project=_PROJECT,
        task="QDTrack backbone + FPN + RPN (image -> objectness, deltas, P2..P5)",
        build=build_detector,
        example_inputs=_detector_inputs,
        output_names=("rpn_scores", "rpn_deltas", "p2", "p3", "p4", "p5"),
        published_params=_DETECTOR_PARAMS,
        published_source=_SOURCE,
        params_source="derived",
        parts=_PARTS,
    )
)
register(
    ModelSpec(
        name="qdtrack_heads",
        project=_PROJECT,
        task="QDTrack RoI box head + quasi-dense embedding head (P2..P5 + RoIs -> boxes, embeddings)",
        build=build_heads,
        example_inputs=_heads_inputs,
        output_names=("cls_scores", "bbox_deltas", "track_embeds"),
        published_params=_HEADS_PARAMS,
        published_source=_SOURCE,
        params_source="derived",
        parts=_PARTS,
    )
)
