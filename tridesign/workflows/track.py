"""`tridesign track`: a video through data sparsity, a compiled (optionally pruned) detector and a tracker.

Per frame: OpenCV decodes it; the frame-drop policy decides whether the detector runs at all (a
dropped frame reuses the last tracks, moved by their Kalman motion model); on a kept frame the
frame is split into `patch_px` patches, each scored by smoothed Sobel edge magnitude, the lowest
`patch_drop` of the area is dropped (patches under the previous frame's tracks are always kept),
and the detector runs on the frame with that patch mask. ByteTrack-style IoU association follows
(`tridesign.tracking`; the detector has no appearance embedding).

Where the mask saves time: on `--backend tvm` the masked backbone runs on the tile-sparse kernels
(`kernels.tile_network`: inactive tiles are neither loaded nor computed); ONNX Runtime applies the
mask inside the graph and computes everything, so there it saves MACs on paper only. Both report
the MACs the mask needs (`active`) and what the backend computed (`computed`).

OUT_DIR (built in a temporary directory and renamed into place; Ctrl-C leaves nothing):
`results.txt` (MOT), `annotated.mp4`, `summary.json`, and `detector.onnx` — the detector's ONNX
with the measured data sparsity in its `tridesign.data_sparsity` annotation, which
`tridesign simulate OUT_DIR --arch ...` reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx

from tridesign.annotations import DataSparsity, write_data_sparsity
from tridesign.artifact import TRACK_KIND, TRACK_MODEL, TRACK_SUMMARY
from tridesign.atomic import atomic_dir, check_writable_parent
from tridesign.data.detections import decode, network_input, scale_boxes
from tridesign.data.frames import read_frames
from tridesign.data.video import FPS, open_writer
from tridesign.data.video_sparsity import FrameDropper, frame_patch_mask, parse_frame_drop, to_network_mask
from tridesign.errors import UsageError
from tridesign.kernels.mask_macs import conv_macs, conv_sites
from tridesign.sparsity_plan import SparsityPlan
from tridesign.tracking.metrics import score
from tridesign.tracking.mot import MotRow, read_mot, write_results
from tridesign.tracking.tracker import Tracker, TrackerConfig
from tridesign.workflows.track_detector import Detector, load_detector
from tridesign.workflows.track_render import annotate

PAPER_PATCH_PX = 60
PAPER_PATCH_DROP = 0.2


@dataclass(frozen=True)
class TrackOptions:
    model: str | None = None  # artifact directory or registered name (default qdtrack_center)
    config: str | None = None  # config of a registered model (default: track)
    backend: str = "ort"
    frame_drop: str | None = None  # "0.4" / "rate:0.4" / "diff[:T]"; None keeps every frame
    patch_drop: float = 0.0  # fraction of the frame area dropped per kept frame
    patch_px: int = PAPER_PATCH_PX
    prune: SparsityPlan | None = None
    finetune_steps: int = 0
    quantize: str | None = None  # "int8": the compiler's int8 pass, calibrated on training frames
    gt: Path | None = None
    max_detections: int = 50
    video: bool = True  # write the annotated video
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def validate(self) -> TrackOptions:
        if not 0 <= self.patch_drop < 1:
            raise UsageError(f"--patch-drop must lie in [0, 1), got {self.patch_drop}")
        if self.patch_px < 8:
            raise UsageError(f"--patch must be at least 8 pixels, got {self.patch_px}")
        if self.backend not in ("ort", "tvm"):
            raise UsageError(f"--backend must be ort or tvm, got {self.backend!r}")
        if self.quantize not in (None, "int8"):
            raise UsageError(f"--quantize must be int8, got {self.quantize!r}")
        if self.quantize and self.backend == "tvm" and self.patch_drop > 0:
            raise UsageError("the tile-sparse TVM detector runs float weights: with --quantize int8 and --patch-drop use --backend ort")
        return self


@dataclass
class _Totals:
    frames: int = 0
    kept: int = 0
    patch_fraction: list[float] = field(default_factory=list)
    macs_active: float = 0.0
    macs_computed: float = 0.0
    layer_active: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("decode", "prepare", "detector", "tracker", "render"), 0.0))


class _Runner:
    """Runs the detector on one frame with a mask; tile-sparse on TVM when patches are dropped."""

    def __init__(self, detector: Detector, options: TrackOptions):
        self.detector = detector
        self.model = detector.model()
        self.sites = conv_sites(self.model)
        self.tiles = None
        if options.backend == "tvm" and options.patch_drop > 0:
            from tridesign.kernels.tile_network import TileSparseNetwork  # TVM only where it runs

            self.tiles = TileSparseNetwork(self.model)
        self.dense_macs = conv_macs(self.model, np.ones((1, 1, *detector.mask_hw), np.float32), sites=self.sites)["dense"]
        # The compiled module computes every pixel whatever the mask says; a layer that runs on a
        # sparse kernel (TVM, pruned weights) computes only its non-zero weights.
        sparse = {r["weight"]: r["density"] for r in detector.manifest.sparse_layers if r["sparse"] and r["density"] is not None}
        self.module_macs = int(sum(site.macs * sparse.get(site.weight, 1.0) for site in self.sites))

    def run(self, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        if self.tiles is not None:
            return self.tiles.run(image, mask)
        return self.detector.session.run({"image": image, "patch_mask": mask})

    def macs(self, mask: np.ndarray) -> dict[str, Any]:
        """This frame's MACs: dense, what the mask needs (active), what this backend computed."""
        if self.tiles is not None:
            return self.tiles.macs(mask)
        return {**conv_macs(self.model, mask, sites=self.sites), "computed": self.module_macs}


def track(source: str | Path, out: Path, options: TrackOptions,
          on_frame: Callable[[int, int | None], object] | None = None) -> dict[str, Any]:
    """Track SOURCE (a video or an image directory) into OUT_DIR; return summary.json's content.

    Everything a user can get wrong (the source, the --gt file, the options, the output path) is
    checked before the first file is written; `on_frame(done, total)` reports progress.
    """
    options.validate()
    out = Path(out)
    check_writable_parent(out)
    dropper: FrameDropper = parse_frame_drop(options.frame_drop)
    gt_rows = read_mot(options.gt) if options.gt is not None else None
    frames = read_frames(source)
    total = _frame_count(source)
    if gt_rows and total and max(r.frame for r in gt_rows) > total:
        raise UsageError(f"{options.gt}: ground truth reaches frame {max(r.frame for r in gt_rows)}, "
                         f"but {source} has {total} frames")
    detector = load_detector(options.model, options.backend, options.prune, options.finetune_steps, options.config,
                             options.quantize)
    runner = _Runner(detector, options)
    tracker = Tracker(options.tracker)
    totals = _Totals()
    results: list[MotRow] = []
    started = time.perf_counter()
    with atomic_dir(out, TRACK_SUMMARY) as tmp:
        writer = None
        clock = time.perf_counter()
        boxes_prev = np.zeros((0, 4), np.float32)
        for index, frame in enumerate(frames):
            totals.seconds["decode"] += time.perf_counter() - clock
            if writer is None and options.video:
                writer, video_path, _ = open_writer(tmp / "annotated", frame.shape[1], frame.shape[0], FPS)
            totals.frames += 1
            t0 = time.perf_counter()
            keep = dropper.keep(index, frame)
            kept_patches = None
            if keep:
                kept_patches = frame_patch_mask(frame, options.patch_drop, boxes_prev, options.patch_px)
                net_mask = to_network_mask(kept_patches, detector.mask_hw, frame.shape[:2], options.patch_px)
                image = network_input(frame, detector.image_hw)
                t1 = time.perf_counter()
                outputs = runner.run(image, net_mask)
                t2 = time.perf_counter()
                dets = scale_boxes(decode(outputs["heatmap"], outputs["boxes"], options.tracker.low_score, options.max_detections),
                                   detector.image_hw, frame.shape[:2])
                tracks = tracker.update(dets)
                t3 = time.perf_counter()
                _count(totals, kept_patches, runner.macs(net_mask))
                totals.kept += 1
            else:
                t1 = t2 = time.perf_counter()
                tracks = tracker.predict_only()
                t3 = time.perf_counter()
            totals.seconds["prepare"] += t1 - t0
            totals.seconds["detector"] += t2 - t1
            totals.seconds["tracker"] += t3 - t2
            t4 = time.perf_counter()  # the MAC accounting above is measurement, left out of every bucket
            boxes_prev = np.array([t.box for t in tracks], np.float32).reshape(-1, 4)
            results.extend(_rows(index, tracks, frame.shape[:2]))
            if writer is not None:
                writer.write(annotate(frame, tracks, keep, kept_patches, options.patch_px, index))
            totals.seconds["render"] += time.perf_counter() - t4
            if on_frame:
                on_frame(index + 1, total)
            clock = time.perf_counter()
        if writer is not None:
            writer.release()
        wall = time.perf_counter() - started
        write_results(tmp / "results.txt", results)
        sparsity = _data_sparsity(totals, options, source)
        model = runner.model
        write_data_sparsity(model, sparsity)
        onnx.save(model, str(tmp / TRACK_MODEL))
        summary = _summary(source, options, detector, totals, wall, sparsity, runner.dense_macs,
                           video_path.name if writer else None)
        if gt_rows is not None:
            beyond = [r for r in gt_rows if r.frame > totals.frames]
            if beyond:
                summary["notes"].append(f"{len(beyond)} ground-truth rows lie beyond the {totals.frames} frames read; not scored")
            summary["metrics"] = score([r for r in gt_rows if r.frame <= totals.frames], results, totals.frames)
        (tmp / TRACK_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _frame_count(source: str | Path) -> int | None:
    path = Path(source)
    if path.is_dir():
        return None
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count if count > 0 else None


def _count(totals: _Totals, kept_patches: np.ndarray, macs: dict[str, Any]) -> None:
    totals.patch_fraction.append(float(kept_patches.mean()))
    totals.macs_active += macs["active"]
    totals.macs_computed += macs["computed"]
    for layer in macs["layers"]:
        if layer["masked"]:
            totals.layer_active.setdefault(layer["node"], []).append(layer["active_fraction"])


def _rows(index: int, tracks: list, frame_hw: tuple[int, int]) -> list[MotRow]:
    """MOT rows of one frame, boxes clipped to the frame (a predicted box may leave it)."""
    h, w = frame_hw
    rows = []
    for t in tracks:
        x1, y1, x2, y2 = (float(v) for v in t.box)
        box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
        if box[2] > box[0] and box[3] > box[1]:
            rows.append(MotRow.from_xyxy(index + 1, t.id, box, t.score))
    return rows


def _data_sparsity(totals: _Totals, options: TrackOptions, source: str | Path) -> DataSparsity:
    """The measured record: kept frames, mean active patch area, and each backbone layer's mean active fraction."""
    kept = totals.kept / max(totals.frames, 1)
    return DataSparsity(
        tile_px=options.patch_px,
        active_tile_fraction=float(np.mean(totals.patch_fraction)) if totals.patch_fraction else 1.0,
        frame_keep_fraction=kept,
        layer_active_fraction={node: float(np.mean(v)) for node, v in totals.layer_active.items()},
        source=f"measured by tridesign track on {Path(source).name}: frame drop {options.frame_drop or 'none'}, "
               f"patch drop {options.patch_drop:g} of {options.patch_px}px patches",
    )


def _summary(source: str | Path, options: TrackOptions, detector: Detector, totals: _Totals, wall: float,
             sparsity: DataSparsity, dense_per_frame: float, video: str | None) -> dict[str, Any]:
    """summary.json: dense MACs count every frame at full size (what the dense tracker computes)."""
    frames = max(totals.frames, 1)
    seconds = {k: round(v, 4) for k, v in totals.seconds.items()}
    pipeline = sum(v for k, v in totals.seconds.items() if k != "render")
    dense_all = dense_per_frame * totals.frames
    notes = []
    if options.backend == "ort" and options.patch_drop > 0:
        notes.append("ONNX Runtime applies the patch mask but computes every layer: dropped patches save MACs on an "
                     "accelerator, not time here (use --backend tvm for the tile-sparse kernels)")
    return {
        "kind": TRACK_KIND,
        "version": 1,
        "source": str(source),
        "options": _options_record(options),
        "detector": {"artifact": str(detector.artifact), "backend": detector.manifest.backend,
                     "source": detector.manifest.source.model_dump(mode="json", exclude_unset=True),
                     "image_hw": list(detector.image_hw), "mask_hw": list(detector.mask_hw),
                     "tile_sparse": options.backend == "tvm" and options.patch_drop > 0},
        "frames": totals.frames,
        "kept_frames": totals.kept,
        "kept_frame_fraction": round(totals.kept / frames, 6),
        "mean_active_patch_fraction": round(sparsity.active_tile_fraction, 6),
        "macs": {
            "dense_per_frame": round(dense_per_frame),
            "dense_total": round(dense_all),
            "active_total": round(totals.macs_active),
            "computed_total": round(totals.macs_computed),
            "computed_vs_dense": round(totals.macs_computed / dense_all, 6) if dense_all else None,
        },
        "fps": {
            "pipeline": round(totals.frames / pipeline, 3) if pipeline else None,
            "end_to_end": round(totals.frames / wall, 3) if wall else None,
            "detector_ms_per_kept_frame": round(1000 * totals.seconds["detector"] / totals.kept, 4) if totals.kept else None,
        },
        "seconds": seconds,
        "wall_seconds": round(wall, 3),
        "data_sparsity": sparsity.model_dump(mode="json"),
        "files": ["results.txt", *([video] if video else []), TRACK_MODEL, TRACK_SUMMARY],
        "notes": notes,
    }


def _options_record(options: TrackOptions) -> dict[str, Any]:
    """The options as JSON values (validated, so every number is finite)."""
    record = asdict(options)
    record["prune"] = str(options.prune) if options.prune else None
    record["gt"] = str(options.gt) if options.gt else None
    return record
