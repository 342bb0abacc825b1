"""The annotated video `track` writes: boxes and ids, dropped patches shaded, dropped frames marked."""

from __future__ import annotations

import cv2
import numpy as np

SHADE = 0.35  # brightness kept in a dropped patch


def id_colour(ident: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per track id (golden-angle hues)."""
    hue = int(ident * 137.508) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def shade_patches(frame: np.ndarray, kept: np.ndarray, patch_px: int) -> np.ndarray:
    """Darken the patches of the frame-grid mask `kept` (rows, cols) that were dropped."""
    h, w = frame.shape[:2]
    full = np.repeat(np.repeat(kept, patch_px, axis=0), patch_px, axis=1)[:h, :w]
    out = frame.copy()
    out[~full] = (out[~full] * SHADE).astype(np.uint8)
    return out


def annotate(frame: np.ndarray, tracks: list, kept_frame: bool, kept_patches: np.ndarray | None, patch_px: int,
             index: int) -> np.ndarray:
    """One output frame: shaded dropped patches, each track's box and id, and the frame's status."""
    out = shade_patches(frame, kept_patches, patch_px) if kept_patches is not None else frame.copy()
    for t in tracks:
        x1, y1, x2, y2 = (int(round(v)) for v in t.box)
        colour = id_colour(t.id)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, str(t.id), (x1 + 2, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    status = f"frame {index + 1}" + ("" if kept_frame else "  dropped (motion model)")
    cv2.putText(out, status, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, status, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out
