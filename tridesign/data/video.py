"""Video made and read here: the synthetic sequences (`video_synth` renders them, this module
encodes them with OpenCV and writes their MOT-challenge files) and the frame reader (`frames`).

`synthesize` writes V sequences into a directory built atomically, with `videos.json` (the marker)
listing the sequences and the arguments: DIR/<seq>/<seq>.mp4, DIR/<seq>/gt/gt.txt, DIR/<seq>/seqinfo.ini.
"""

from __future__ import annotations

import configparser
import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2

from tridesign.atomic import atomic_dir
from tridesign.data.frames import read_frames
from tridesign.data.video_synth import SynthConfig, config_dict, parse_size, render

MARKER = "videos.json"
FPS = 30
# (fourcc, extension): the first one this OpenCV build opens is used. opencv-python-headless 5.1 on
# Linux writes mp4v (byte-identical files for identical frames); MJPG/.avi is the fallback.
CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))

__all__ = ["CODECS", "FPS", "MARKER", "SynthConfig", "parse_size", "read_frames", "render", "synthesize", "write_sequence"]


def synthesize(cfg: SynthConfig, out: Path, on_sequence: Callable[[str], object] | None = None) -> dict:
    """Render `cfg.videos` sequences into `out` (replaced only if a previous run wrote it)."""
    cfg.validate()
    out = Path(out)
    with atomic_dir(out, MARKER) as tmp:
        sequences = []
        for index in range(cfg.videos):
            sequences.append(write_sequence(cfg, index, tmp))
            if on_sequence:
                on_sequence(sequences[-1]["name"])
        summary = {"version": 1, "generator": "tridesign videos synth", "args": config_dict(cfg), "sequences": sequences}
        (tmp / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return {"out": str(out), **summary}


def open_writer(path_stem: Path, width: int, height: int, fps: float = FPS) -> tuple[cv2.VideoWriter, Path, str]:
    """The first codec of CODECS this OpenCV can write: (writer, file path, fourcc)."""
    for fourcc, ext in CODECS:
        path = path_stem.with_suffix(ext)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if writer.isOpened():
            return writer, path, fourcc
        writer.release()
        path.unlink(missing_ok=True)
    raise RuntimeError(f"this OpenCV build can write none of {', '.join(c for c, _ in CODECS)}")


def seqinfo_text(name: str, cfg: SynthConfig, video: str) -> str:
    """seqinfo.ini as the MOT challenge writes it, plus `video=` naming the encoded file."""
    ini = configparser.ConfigParser()
    ini.optionxform = str  # keep MOT's camelCase keys
    ini["Sequence"] = {"name": name, "frameRate": str(FPS), "seqLength": str(cfg.frames),
                       "imWidth": str(cfg.width), "imHeight": str(cfg.height), "imExt": ".jpg", "video": video}
    out = io.StringIO()
    ini.write(out, space_around_delimiters=False)
    return out.getvalue()


def sequence_name(index: int) -> str:
    return f"synth-{index + 1:04d}"


def write_sequence(cfg: SynthConfig, index: int, root: Path) -> dict:
    """Render sequence `index` into root/<seq>/ (video, gt/gt.txt, seqinfo.ini); returns its summary."""
    name = sequence_name(index)
    seq = root / name
    (seq / "gt").mkdir(parents=True)
    writer, video, fourcc = open_writer(seq / name, cfg.width, cfg.height)
    lines, ids = [], set()
    try:
        for frame, rows in render(cfg, index):
            writer.write(frame)
            lines.extend(r.line() for r in rows)
            ids.update(r.ident for r in rows)
    finally:
        writer.release()
    (seq / "gt" / "gt.txt").write_text("".join(line + "\n" for line in lines))
    (seq / "seqinfo.ini").write_text(seqinfo_text(name, cfg, video.name))
    return {"name": name, "video": f"{name}/{video.name}", "fourcc": fourcc, "gt": f"{name}/gt/gt.txt",
            "seqinfo": f"{name}/seqinfo.ini", "frames": cfg.frames, "width": cfg.width, "height": cfg.height,
            "fps": FPS, "gt_rows": len(lines), "ids_seen": len(ids)}
