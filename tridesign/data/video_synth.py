"""Synthetic evaluation video with MOT-challenge ground truth: numpy + OpenCV only.

Each sequence is a textured, static background (scrolled when the camera pans) with textured
rectangles and ellipses of several sizes moving in straight lines. Every object has its own depth,
so objects pass in front of one another; some enter the frame, some leave it, and a share of them
(`occlusion`) is aimed at another object so that their paths cross at the same moment. Ground truth
is computed from the rendered pixels: an object-id buffer records which object is visible where.

Everything random comes from one `numpy.random.SeedSequence` per sequence, with independent
streams for the background, the objects and the sensor noise, so the same arguments give the same
frames and a byte-identical gt.txt.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from tridesign.errors import UsageError

SIZE_CLASSES = (0.08, 0.14, 0.24)  # object height as a fraction of the frame height
CAMERA_MODES = ("static", "pan")


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    frames: int = 120
    width: int = 640
    height: int = 360
    objects: int = 6
    speed: float = 4.0  # pixels per frame (each object: 0.6x to 1.4x this)
    occlusion: float = 0.5  # fraction of objects aimed at another one (crossing + occlusion)
    noise: float = 0.0  # Gaussian sensor noise, sigma in grey levels
    camera: str = "static"
    videos: int = 1

    def validate(self) -> SynthConfig:
        if self.frames < 1:
            raise UsageError(f"--frames must be at least 1, got {self.frames}")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise UsageError(f"--size must be even and at least 32x32, got {self.width}x{self.height}")
        if self.objects < 0:
            raise UsageError(f"--objects must be 0 or more, got {self.objects}")
        if not (self.speed >= 0 and math.isfinite(self.speed)):
            raise UsageError(f"--speed must be a finite number >= 0, got {self.speed}")
        if not 0 <= self.occlusion <= 1:
            raise UsageError(f"--occlusion must lie in [0, 1], got {self.occlusion}")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise UsageError(f"--noise must be a finite number >= 0, got {self.noise}")
        if self.camera not in CAMERA_MODES:
            raise UsageError(f"--camera must be one of {', '.join(CAMERA_MODES)}, got {self.camera!r}")
        if self.videos < 1:
            raise UsageError(f"--videos must be at least 1, got {self.videos}")
        return self


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); anything else is a one-line usage error."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--size must be WIDTHxHEIGHT, e.g. 640x360, got {text!r}")
    return int(parts[0]), int(parts[1])


@dataclass
class _Object:
    ident: int
    shape: str  # "rect" | "ellipse"
    depth: int  # larger is farther away (drawn first)
    patch: np.ndarray  # (h, w, 3) uint8 texture
    mask: np.ndarray  # (h, w) bool silhouette
    anchor: np.ndarray  # top-left (x, y) at frame `t_anchor`, in world coordinates
    t_anchor: float
    velocity: np.ndarray  # pixels per frame

    def top_left(self, t: int) -> np.ndarray:
        return self.anchor + self.velocity * (t - self.t_anchor)


def _noise_texture(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2), 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Muted low-frequency colour field, fine grain and some static scenery (lines, blocks)."""
    img = 70 + 90 * _noise_texture(rng, h, w, 48) + 25 * (_noise_texture(rng, h, w, 6) - 0.5)
    img = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
    img[..., 1] //= 3  # desaturate: objects stand out by colour as well as texture
    img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    for _ in range(int(rng.integers(6, 14))):
        colour = tuple(int(c) for c in rng.integers(50, 200, 3))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p, q, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            size = (int(rng.integers(4, max(5, w // 6))), int(rng.integers(4, max(5, h // 6))))
            cv2.rectangle(img, p, (p[0] + size[0], p[1] + size[1]), colour, -1)
    return img


def _object_look(rng: np.random.Generator, h: int, w: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """A saturated base colour, stripes or checks in a second colour, grain and a dark outline."""
    hues = rng.integers(0, 180, 2)
    colours = [
        cv2.cvtColor(np.array([[[hue, rng.integers(170, 256), rng.integers(150, 256)]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        for hue in hues
    ]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(6, 16))
    if rng.random() < 0.5:
        angle = float(rng.uniform(0, math.pi))
        second = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
    else:
        second = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 1
    patch = np.where(second[..., None], colours[1], colours[0]).astype(np.float32)
    patch += 30 * (_noise_texture(rng, h, w, 4) - 0.5)
    mask = np.zeros((h, w), np.uint8)
    if shape == "rect":
        mask[:] = 1
    else:
        cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2), max(1, h // 2)), 0, 0, 360, 1, -1)
    outline = mask - cv2.erode(mask, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    patch[outline.astype(bool)] *= 0.35
    return np.clip(patch, 0, 255).astype(np.uint8), mask.astype(bool)


def _direction(rng: np.random.Generator, angle: float, spread: float) -> np.ndarray:
    a = angle + float(rng.uniform(-spread, spread))
    return np.array([math.cos(a), math.sin(a)])


def _objects(cfg: SynthConfig, rng: np.random.Generator) -> list[_Object]:
    """Sizes, looks and straight-line paths: enter / leave / stay in turn, then aim some at others."""
    W, H, N = cfg.width, cfg.height, cfg.frames
    depths = rng.permutation(cfg.objects)
    objects, modes = [], []
    for i in range(cfg.objects):
        h = max(8, int(round(H * SIZE_CLASSES[i % len(SIZE_CLASSES)] * rng.uniform(0.8, 1.25))))
        w = max(8, min(W // 2, int(round(h * rng.uniform(0.5, 2.0)))))
        shape = "rect" if rng.random() < 0.5 else "ellipse"
        patch, mask = _object_look(rng, h, w, shape)
        speed = cfg.speed * rng.uniform(0.6, 1.4)
        mode = ("enter", "leave", "stay")[i % 3]
        side = int(rng.integers(0, 4))  # 0 left, 1 right, 2 top, 3 bottom
        outward = (math.pi, 0.0, -math.pi / 2, math.pi / 2)[side]
        outside = {0: (-w - 1, rng.uniform(0, H - h)), 1: (W + 1, rng.uniform(0, H - h)),
                   2: (rng.uniform(0, W - w), -h - 1), 3: (rng.uniform(0, W - w), H + 1)}[side]
        if mode == "enter":
            t_anchor = float(rng.integers(1, max(2, N // 2)))
            velocity = speed * _direction(rng, outward + math.pi, 0.6)
        elif mode == "leave":
            t_anchor = float(rng.integers(N // 2, max(N // 2 + 1, N - 1)))
            velocity = speed * _direction(rng, outward, 0.6)
        else:
            t_anchor, outside = N / 2, (rng.uniform(0, W - w), rng.uniform(0, H - h))
            velocity = speed * _direction(rng, 0.0, math.pi)
        objects.append(_Object(i + 1, shape, int(depths[i]), patch, mask, np.array(outside, float), t_anchor, velocity))
        modes.append(mode)
    if cfg.objects >= 2:
        order = sorted(range(cfg.objects), key=lambda i: (("stay", "leave", "enter").index(modes[i]), i))
        chosen = order[: int(round(cfg.occlusion * cfg.objects))]
        fixed = [i for i in range(cfg.objects) if i not in chosen]
        for i in chosen:
            if fixed:
                _aim(objects[i], objects[int(rng.choice(fixed))], cfg, rng)
            fixed.append(i)
    return objects


def _aim(obj: _Object, target: _Object, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Re-route `obj` so that its centre meets `target`'s centre at a frame where `target` is in view,
    crossing its path at 60 to 180 degrees; of a few such routes, the one longest in view is kept."""
    th, tw = target.mask.shape
    h, w = obj.mask.shape

    def in_view(o_anchor: np.ndarray, t_anchor: float, velocity: np.ndarray, hh: int, ww: int, t: float) -> bool:
        x, y = o_anchor + velocity * (t - t_anchor) + (ww / 2, hh / 2)
        return 0 <= x < cfg.width and 0 <= y < cfg.height

    times = [t for t in range(int(cfg.frames * 0.2), int(math.ceil(cfg.frames * 0.8)) + 1)
             if in_view(target.anchor, target.t_anchor, target.velocity, th, tw, t)] or [cfg.frames // 2]
    speed = float(np.linalg.norm(obj.velocity))
    best, best_score = None, -1
    for _ in range(8):
        t_meet = float(rng.choice(times))
        heading = math.atan2(target.velocity[1], target.velocity[0]) + rng.choice([-1, 1]) * rng.uniform(math.pi / 3, math.pi)
        velocity = speed * np.array([math.cos(heading), math.sin(heading)])
        centre = target.top_left(t_meet) + (tw / 2, th / 2) + rng.normal(0, 0.1 * min(h, w, th, tw), 2)
        anchor = centre - (w / 2, h / 2)
        score = sum(in_view(anchor, t_meet, velocity, h, w, t) for t in range(cfg.frames))
        if score > best_score:
            best, best_score = (anchor, t_meet, velocity), score
    obj.anchor, obj.t_anchor, obj.velocity = best


def _camera(cfg: SynthConfig, t: int) -> tuple[int, int]:
    """Camera offset in pixels: a slow back-and-forth horizontal pan with a little vertical sway."""
    if cfg.camera != "pan":
        return 0, 0
    phase = 2 * math.pi * t / 300
    return int(round(cfg.width / 4 * (1 - math.cos(phase)) / 2)), int(round(cfg.height / 25 * (1 - math.cos(2 * phase)) / 2))


@dataclass(frozen=True)
class Truth:
    """One MOT row: 1-based frame and id, box clipped to the frame (1-based left/top), visibility."""

    frame: int
    ident: int
    left: int
    top: int
    width: int
    height: int
    visibility: float

    def line(self) -> str:
        return f"{self.frame},{self.ident},{self.left},{self.top},{self.width},{self.height},1,1,{self.visibility:.6f}"


def render(cfg: SynthConfig, index: int = 0) -> Iterator[tuple[np.ndarray, list[Truth]]]:
    """Frames (BGR uint8) of sequence `index` with the ground-truth rows of each frame."""
    cfg.validate()
    bg_rng, obj_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([cfg.seed, index]).spawn(3))
    W, H = cfg.width, cfg.height
    pad_x, pad_y = (W // 4 + 2, H // 25 + 2) if cfg.camera == "pan" else (0, 0)
    background = _background(bg_rng, H + pad_y, W + pad_x)
    objects = sorted(_objects(cfg, obj_rng), key=lambda o: -o.depth)  # far to near
    for t in range(cfg.frames):
        cx, cy = _camera(cfg, t)
        frame = background[cy:cy + H, cx:cx + W].copy()
        owner = np.zeros((H, W), np.int32)  # object id visible at each pixel, 0 = background
        placed = []
        for obj in objects:
            x, y = (int(v) for v in np.floor(obj.top_left(t) - (cx, cy) + 0.5))
            h, w = obj.mask.shape
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if x0 >= x1 or y0 >= y1:
                continue
            m = obj.mask[y0 - y:y1 - y, x0 - x:x1 - x]
            frame[y0:y1, x0:x1][m] = obj.patch[y0 - y:y1 - y, x0 - x:x1 - x][m]
            owner[y0:y1, x0:x1][m] = obj.ident
            placed.append((obj, x0, y0, x1, y1))
        rows = []
        for obj, x0, y0, x1, y1 in sorted(placed, key=lambda p: p[0].ident):
            visible = int(np.count_nonzero(owner[y0:y1, x0:x1] == obj.ident))
            if visible:
                rows.append(Truth(t + 1, obj.ident, x0 + 1, y0 + 1, x1 - x0, y1 - y0, visible / int(obj.mask.sum())))
        if cfg.noise > 0:
            frame = np.clip(frame + noise_rng.normal(0, cfg.noise, frame.shape), 0, 255).astype(np.uint8)
        yield frame, rows


def config_dict(cfg: SynthConfig) -> dict:
    return asdict(cfg)
