"""The tracker's detector trained here: `qdtrack_center`, its training, weights cache and registration.

No detection set can be downloaded, so `CenterDetector` (`tridesign.models.video_detector`) trains on
frames of the project's own synthetic videos (`tridesign.data.video_synth`), with seeds that no
evaluation video uses (training from 1000, validation from 5000, evaluation below 1000; see
`tridesign.data.detections`). Frames are rendered at 640x360 or 1280x720 and resized with
INTER_AREA to the network input exactly as `track` resizes its frames, then rendered once into
memory. The loss is CenterNet's: a penalty-reduced focal loss on the centre heat-map plus L1 on the
sub-cell offset and log size at each object's centre cell. Half the frames drop 0-30 % of the
patch cells that hold no object centre, so the detector keeps working when `track` drops patches.

Quality is AP@0.5 (single class, all-point interpolated) on held-apart HD frames with every patch
kept. Weights of the "track" config are trained on first use (2,400 steps: about 5 minutes on 2 idle
cores, 8 to 9 while other work shares them) and cached like the digits model; "tiny" (tests) and
"paper" (the simulator's size) stay at their seeded random initialisation. torch is imported inside the functions, so importing the zoo stays light.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tridesign.data.detections import (
    STRIDE,
    TRAIN_SEED,
    VAL_SEED,
    DetectionFrames,
    average_precision,
    decode,
    encode_targets,
    synthetic_frames,
)
from tridesign.models.digits import cache_dir
from tridesign.models.registry import ModelSpec, register
from tridesign.models.training import masked_step

if TYPE_CHECKING:
    import torch

    from tridesign.models.video_detector import CenterDetector

MODEL_NAME = "qdtrack_center"
CONFIGS = ("tiny", "track", "paper")
TRAINED_CONFIGS = ("track",)
# Bumped whenever the data, the targets or the training recipe change, so stale caches are ignored.
RECIPE_VERSION = 2
TRAIN_SEQUENCES = 90  # x 16 frames = 1,440 training frames
VAL_SEQUENCES = 12  # x 8 HD frames = 96 validation frames
EXAMPLE_SEED = 6000  # example and verification frames: neither training nor validation
TRAIN_STEPS = 2400
BATCH = 8
LR = 2e-3
RECOVERY_LR = 2e-4  # Adam after pruning: a tenth of the training rate keeps the trained features
PATCH_PX = 16  # network-input pixels per patch-mask cell (video_detector.PATCH_PX, without torch)
MAX_PATCH_DROP = 0.3
EVAL_THRESHOLD = 0.05
EVAL_MAX_DETECTIONS = 100


def image_hw(config: str) -> tuple[int, int]:
    from tridesign.models.video_detector import center_config

    return center_config(config).image_hw


def weights_path(config: str = "track", seed: int = 0) -> Path:
    return cache_dir() / f"{MODEL_NAME}_{config}_s{seed}_v{RECIPE_VERSION}.pt"


def training_frames(hw: tuple[int, int]) -> DetectionFrames:
    return synthetic_frames(hw, TRAIN_SEED, TRAIN_SEQUENCES)


def validation_frames(hw: tuple[int, int]) -> DetectionFrames:
    return synthetic_frames(hw, VAL_SEED, VAL_SEQUENCES, frames_per_sequence=8, hd_share=1.0)


def _patch_mask(hw: tuple[int, int], boxes: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """(1, H/16, W/16) ones with `drop` of the cells that hold no object centre set to 0."""
    mh, mw = hw[0] // PATCH_PX, hw[1] // PATCH_PX
    mask = np.ones(mh * mw, np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2 / PATCH_PX
    keep = np.clip(centres[:, 1].astype(int), 0, mh - 1) * mw + np.clip(centres[:, 0].astype(int), 0, mw - 1)
    free = np.setdiff1d(np.arange(mh * mw), keep)
    mask[rng.choice(free, size=int(round(drop * free.size)), replace=False)] = 0.0
    return mask.reshape(1, mh, mw)


def _sample(frames: DetectionFrames, idx: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A training batch: flips, brightness/contrast jitter, patch drop, encoded targets."""
    hw = frames.images.shape[1:3]
    images, masks, heats, b_idx, cells, regs = [], [], [], [], [], []
    for b, i in enumerate(idx):
        image, boxes = frames.images[i], frames.boxes[i].copy()
        if rng.random() < 0.5:
            image = image[:, ::-1]
            boxes[:, [0, 2]] = hw[1] - boxes[:, [2, 0]]
        x = image.transpose(2, 0, 1).astype(np.float32) / 255
        images.append(np.clip(x * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1), 0, 1))
        drop = rng.uniform(0, MAX_PATCH_DROP) if rng.random() < 0.5 else 0.0
        masks.append(_patch_mask(hw, boxes, drop, rng))
        t = encode_targets(boxes, hw)
        heats.append(t["heatmap"][None])
        b_idx.append(np.full(len(t["index"]), b))
        cells.append(t["index"])
        regs.append(np.concatenate([t["offset"], t["size"]], axis=1))
    return {
        "image": np.stack(images).astype(np.float32),
        "patch_mask": np.stack(masks),
        "heatmap": np.stack(heats),
        "batch_index": np.concatenate(b_idx).astype(np.int64),
        "cell_index": np.concatenate(cells).astype(np.int64),
        "regression": np.concatenate(regs).astype(np.float32),
    }


def center_loss(
    heat: "torch.Tensor", boxes: "torch.Tensor", target: dict[str, "torch.Tensor"]
) -> tuple["torch.Tensor", dict[str, float]]:
    """CenterNet's focal loss (alpha 2, beta 4) over the heat-map, normalised by the number of
    centres, plus L1 on (dx, dy) and on (log w, log h) at the centre cells."""
    import torch
    import torch.nn.functional as F

    gt = target["heatmap"]
    pos = gt >= 1.0
    p = torch.sigmoid(heat)
    pos_term = ((1 - p) ** 2 * F.logsigmoid(heat))[pos].sum()
    neg_term = ((1 - gt) ** 4 * p**2 * F.logsigmoid(-heat))[~pos].sum()
    count = max(int(target["regression"].shape[0]), 1)
    focal = -(pos_term + neg_term) / max(int(pos.sum()), 1)
    flat = boxes.flatten(2).transpose(1, 2)  # (B, h*w, 4)
    pred = flat[target["batch_index"], target["cell_index"]]
    reg = target["regression"]
    offset = F.l1_loss(pred[:, :2], reg[:, :2], reduction="sum") / count
    size = F.l1_loss(pred[:, 2:], reg[:, 2:], reduction="sum") / count
    return focal + offset + size, {"focal": focal.item(), "offset": offset.item(), "size": size.item()}


def _schedule(steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first tenth (at most 100 steps), then cosine decay to zero."""
    warm = max(1, min(100, steps // 10))
    return lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))


def train_steps(
    model: "torch.nn.Module",
    steps: int,
    lr: float = LR,
    batch: int = BATCH,
    seed: int = 0,
    masks: dict[str, "torch.Tensor"] | None = None,
    frames: DetectionFrames | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Adam with warm-up and cosine decay for `steps` batches of synthetic frames; returns the losses.

    `masks` (parameter name -> 0/1 tensor) are re-applied after every step, so pruned weights stay
    zero during recovery finetuning (the contract of `tridesign.compiler.sparsity.recover_torch`).
    `frames` defaults to the training frames at the model's input size.
    """
    import torch

    data = frames if frames is not None else training_frames(model.cfg.image_hw)
    if len(data) < batch:
        raise ValueError(f"{len(data)} training frames cannot fill a batch of {batch}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    params = dict(model.named_parameters())
    losses: list[float] = []
    model.train()
    while len(losses) < steps:
        order = rng.permutation(len(data))
        for start in range(0, len(data) - batch + 1, batch):
            if len(losses) >= steps:
                break
            sample = {k: torch.from_numpy(v) for k, v in _sample(data, order[start : start + batch], rng).items()}
            heat, boxes = model(sample["image"], sample["patch_mask"])
            loss, _ = center_loss(heat, boxes, sample)
            losses.append(masked_step(opt, sched, loss, params, masks))
            if on_step is not None:
                on_step(len(losses), losses[-1])
    model.eval()
    return losses


def detect(
    model: "torch.nn.Module",
    images: np.ndarray,
    patch_masks: np.ndarray | None = None,
    score_threshold: float = EVAL_THRESHOLD,
    max_detections: int = EVAL_MAX_DETECTIONS,
    batch: int = 16,
) -> list[np.ndarray]:
    """(N, H, W, 3) RGB uint8 frames -> per frame (K, 5) detections in network-input pixels (torch)."""
    import torch

    was_training = model.training
    model.eval()
    mh, mw = images.shape[1] // PATCH_PX, images.shape[2] // PATCH_PX
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255)
            m = torch.ones(len(x), 1, mh, mw) if patch_masks is None else torch.from_numpy(patch_masks[i : i + batch])
            heat, boxes = model(x, m)
            for h, b in zip(heat.numpy(), boxes.numpy()):
                out.append(decode(h[None], b[None], score_threshold, max_detections, STRIDE))
    model.train(was_training)
    return out


def evaluate(model: "torch.nn.Module", frames: DetectionFrames | None = None, patch_drop: float = 0.0) -> float:
    """AP@0.5 (0..1) of a torch detector on held-apart HD frames (validation seeds, never trained on).

    With `patch_drop` > 0, that fraction of the cells holding no object centre is dropped (seeded),
    to see how the detector fares when `track` drops patches.
    """
    data = frames if frames is not None else validation_frames(model.cfg.image_hw)
    rng = np.random.default_rng(0)
    hw = data.images.shape[1:3]
    masks = np.stack([_patch_mask(hw, b, patch_drop, rng) for b in data.boxes]) if patch_drop else None
    return average_precision(detect(model, data.images, masks), list(data.boxes))


def train_center_detector(
    config: str = "track", steps: int | None = None, seed: int = 0, on_step: Callable[[int, float], None] | None = None
) -> tuple["CenterDetector", dict[str, Any]]:
    """Train `config` from scratch for `steps` (default `TRAIN_STEPS`) batches; returns (model in eval
    mode, what the cache records about it)."""
    import torch

    from tridesign.models.video_detector import build_center_detector

    steps = TRAIN_STEPS if steps is None else steps
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_center_detector(config)
    frames = training_frames(model.cfg.image_hw)
    rendered = time.perf_counter() - start
    losses = train_steps(model, steps, seed=seed, frames=frames, on_step=on_step)
    meta = {
        "recipe": RECIPE_VERSION,
        "steps": steps,
        "training_frames": len(frames),
        "render_seconds": rendered,
        "seconds": time.perf_counter() - start,
        "loss_last": float(np.mean(losses[-50:])),
        "ap50": evaluate(model),
        "ap50_patch_drop_20": evaluate(model, patch_drop=0.2),
    }
    return model, meta


def _save_atomic(state: dict, path: Path) -> None:
    import torch

    from tridesign.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save(state, handle)


def _train_with_progress(config: str, seed: int, path: Path) -> tuple["CenterDetector", dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tridesign.progress import stderr

    stderr.print(f"training {MODEL_NAME}:{config} on synthetic frames (first use, 5 to 9 minutes on 2 cores); "
                 f"cached in {path}")
    columns = (TextColumn("training {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(f"{MODEL_NAME}:{config}", total=TRAIN_STEPS, loss="-")
        return train_center_detector(
            config, seed=seed, on_step=lambda t, loss: progress.update(task, completed=t, loss=f"{loss:.3f}")
        )


def load_trained_center(config: str = "track", seed: int = 0, retrain: bool = False) -> "CenterDetector":
    """The trained detector in eval mode: loaded from the cache, trained (and cached) on first use."""
    import torch

    from tridesign.models.video_detector import build_center_detector

    path = weights_path(config, seed)
    if path.exists() and not retrain:
        model = build_center_detector(config)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        return model.eval()
    model, meta = _train_with_progress(config, seed, path)
    _save_atomic({"state_dict": model.state_dict(), "meta": meta}, path)
    return model


def cached_meta(config: str = "track", seed: int = 0) -> dict[str, Any] | None:
    """What was recorded when the cached weights were trained (AP@0.5, seconds...); None before training."""
    import torch

    path = weights_path(config, seed)
    if not path.exists():
        return None
    return dict(torch.load(path, map_location="cpu", weights_only=True)["meta"])


def _load_weights(module: "torch.nn.Module", config: str) -> None:
    if config in TRAINED_CONFIGS:
        module.load_state_dict(load_trained_center(config).state_dict())


def _example_frames(config: str, count: int, seed: int) -> np.ndarray:
    frames = synthetic_frames(image_hw(config), EXAMPLE_SEED + seed, 1, frames_per_sequence=max(count, 8), hd_share=1.0)
    return frames.images[-count:]  # the last frames: objects that enter are in view by then


def example_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Rendered HD frames (seeds neither trained nor validated on), resized, and a full patch mask."""
    hw = image_hw(config)
    images = _example_frames(config, batch, seed).transpose(0, 3, 1, 2).astype(np.float32) / 255
    return {"image": np.ascontiguousarray(images), "patch_mask": np.ones((batch, 1, hw[0] // PATCH_PX, hw[1] // PATCH_PX), np.float32)}


def calibration(config: str, seed: int, count: int = 8) -> list[dict[str, np.ndarray]]:
    """Training frames, one per batch, spread over two clips (int8 calibration of the deployed detector)."""
    hw = image_hw(config)
    frames = synthetic_frames(hw, TRAIN_SEED + 2 * seed, 2)
    picks = np.linspace(0, len(frames) - 1, count).astype(int)
    mask = np.ones((1, 1, hw[0] // PATCH_PX, hw[1] // PATCH_PX), np.float32)
    return [{"image": (frames.images[i].transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32), "patch_mask": mask}
            for i in picks]


def _build(config: str) -> "torch.nn.Module":
    from tridesign.models.video_detector import build_center_detector

    return build_center_detector(config)


# QDTrack's detector (R-50 + FPN + RPN head, as `qdtrack_detector`: 27,446,351) less the FPN's
# P3..P5 3x3 output convs (3 x 590,080), which a head on P2 alone leaves unused; the centre head
# keeps the RPN head's shared 3x3 conv and has 1 + 4 output channels where the RPN has 3 anchors x 5.
_PUBLISHED_PARAMS = 27_446_351 - 3 * 590_080

register(
    ModelSpec(
        name=MODEL_NAME,
        project="Tri-design MOT",
        task="tracking detector: QDTrack backbone + FPN with a centre/box head on P2, patch-masked (image, patch_mask -> heatmap, boxes)",
        build=_build,
        example_inputs=example_inputs,
        output_names=("heatmap", "boxes"),
        configs=CONFIGS,
        default_config="track",
        published_params=_PUBLISHED_PARAMS,
        published_source="QDTrack detector layout (R-50 + FPN + RPN head, SysCV/qdtrack) without the FPN's unused P3-P5 output convs",
        params_source="derived",
        weights=_load_weights,
        calibration=calibration,
        notes={
            "weights": "track: trained here on synthetic video (seeds >= 1000), cached; tiny and paper: random init",
            "quality": "AP@0.5 on held-apart synthetic HD frames (tridesign.models.video_training.evaluate)",
            "post_processing": "tridesign.data.detections.decode (3x3 peak picking, top-k)",
        },
    )
)
