"""Frames from a directory of images or any video OpenCV reads, as BGR uint8 arrays.

`read_frames` checks its source before it returns (the path exists, OpenCV opens it, the first
frame decodes), so a command can refuse a bad source in one line before it writes anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from tridesign.errors import TridesignError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


def image_files(directory: Path) -> list[Path]:
    """The images of `directory` in name order (hidden files skipped)."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_frames(source: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or an image directory (sorted by name), BGR uint8 (H, W, 3).

    Raises `TridesignError` with one line, before the first frame is yielded, for a missing path, a
    file OpenCV cannot open or decode, an empty video or a directory without images; an image in a
    directory that cannot be read or differs in size from the first raises when it is reached.
    """
    path = Path(source)
    if not path.exists():
        raise TridesignError(f"{path}: no such file or directory")
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise TridesignError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this directory")
        first = _read_image(files[0])
        return _image_frames(first, files[1:])
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise TridesignError(f"{path}: OpenCV cannot open this as a video")
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise TridesignError(f"{path}: no frame could be decoded (empty or not a video)")
    return _video_frames(capture, first)


def _read_image(file: Path) -> np.ndarray:
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise TridesignError(f"{file}: OpenCV cannot read this image")
    return image


def _image_frames(first: np.ndarray, rest: list[Path]) -> Iterator[np.ndarray]:
    yield first
    for file in rest:
        image = _read_image(file)
        if image.shape != first.shape:
            raise TridesignError(f"{file}: size {image.shape[1]}x{image.shape[0]} differs from the first image's "
                                 f"{first.shape[1]}x{first.shape[0]}")
        yield image


def _video_frames(capture: cv2.VideoCapture, first: np.ndarray) -> Iterator[np.ndarray]:
    try:
        frame = first
        while True:
            yield _bgr(frame)
            ok, frame = capture.read()
            if not ok or frame is None:
                return
    finally:
        capture.release()


def _bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame
