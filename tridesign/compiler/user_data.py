"""The user's own inputs for `compile --calibration` and `--verify-inputs`.

Int8 scales are only as good as the data they were calibrated on, and seeded noise is not what a
deployed model sees; verifying on the user's inputs as well catches an int8 or backend mismatch
that noise never reaches. DATA is an .npz with an array per graph input (or `x` for a one-input
graph), read by the same checks as `--eval-data` (`evaluate.bind_inputs`), or, for a graph with one
image input, a directory of images or a video (`tridesign.data.frames.read_frames`), turned into
that input by `--preprocess`: resized to its height and width, channels in its order, scaled to
[0, 1], minus `mean`, divided by `std`, in its layout.

Rows are cut into batches of the artifact's batch size, the last one filled up with rows from the
start: the compiled artifact takes exactly that batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.artifact import load_npz
from tridesign.compiler.evaluate import Spec, bind_inputs, spec_dict
from tridesign.errors import UsageError

MAX_FRAMES = 256  # frames read from an image directory or a video: enough for MinMax scales, bounded in memory
ORDERS = ("rgb", "bgr")
LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocess:
    """`--preprocess size=HxW,mean=a,b,c,std=a,b,c,order=rgb|bgr,layout=nchw|nhwc`; `size` None
    takes the input's own height and width."""

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    order: str = "rgb"
    layout: str = "nchw"


@dataclass(frozen=True)
class UserInputs:
    """What `compile --calibration/--verify-inputs/--preprocess` ask for (paths as given)."""

    calibration: str | None = None
    verify: str | None = None
    preprocess: Preprocess | None = None

    def check(self, quantize: str | None, runs_here: bool) -> None:
        """The mistakes found without the model, before minutes of exporting and compiling."""
        if self.calibration is not None and not quantize:
            raise UsageError("--calibration sets the int8 scales; give --quantize int8 too")
        if self.preprocess is not None and self.calibration is None and self.verify is None:
            raise UsageError("--preprocess turns images into inputs; give --calibration or --verify-inputs too")
        if self.verify is not None and not runs_here:
            raise UsageError("--verify-inputs runs the compiled artifact, and artifacts for this target cannot run here")
        for flag, data in (("--calibration", self.calibration), ("--verify-inputs", self.verify)):
            if data is not None and not Path(data).exists():
                raise UsageError(f"{flag} {data}: no such file or directory")


@dataclass(frozen=True)
class UserData:
    """Rows for the graph's inputs (all N of them) and where they came from, for the manifest."""

    inputs: dict[str, np.ndarray]
    description: str

    @property
    def samples(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch: int) -> list[dict[str, np.ndarray]]:
        """Consecutive batches of `batch` rows; the last is filled up with rows from the start."""
        count = -(-self.samples // batch)
        order = np.resize(np.arange(self.samples), count * batch)
        return [{name: array[order[i * batch:(i + 1) * batch]] for name, array in self.inputs.items()} for i in range(count)]


def parse_preprocess(text: str | None) -> Preprocess:
    """`--preprocess` as a `Preprocess`; each mistake one line naming the key."""
    if not text:
        return Preprocess()
    fields: dict[str, Any] = {}
    key = None
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if sep:
            key = name.strip()
            if key not in ("size", "mean", "std", "order", "layout"):
                raise UsageError(f"--preprocess: unknown key {key!r}; use size=HxW,mean=a,b,c,std=a,b,c,order=rgb|bgr,layout=nchw|nhwc")
            if key in fields:
                raise UsageError(f"--preprocess: {key} given twice")
            fields[key] = [value.strip()]
        elif key in ("mean", "std"):
            fields[key].append(part.strip())  # mean=a,b,c: the values after the first have no key
        else:
            raise UsageError(f"--preprocess: {part!r} is not KEY=VALUE")
    return Preprocess(
        size=_size(fields["size"][0]) if "size" in fields else None,
        mean=_floats("mean", fields.get("mean", ["0"])),
        std=_floats("std", fields.get("std", ["1"])),
        order=_choice("order", fields.get("order", ["rgb"])[0], ORDERS),
        layout=_choice("layout", fields.get("layout", ["nchw"])[0], LAYOUTS),
    )


def load_user_data(data: str | Path, inputs: Sequence[Spec], preprocess: Preprocess | None, flag: str) -> UserData:
    """The rows of `data` for the graph `inputs`: an .npz, or (one image input) an image directory or
    a video preprocessed by `preprocess`; every mismatch one line naming `flag`."""
    path = Path(data)
    where = f"{flag} {path}"
    if not path.exists():
        raise UsageError(f"{where}: no such file or directory")
    if path.suffix == ".npz" and path.is_file():
        if preprocess is not None:
            raise UsageError(f"--preprocess is for images and videos; {where} is an .npz of ready inputs")
        arrays = bind_inputs(load_npz(path), inputs, where)
        return UserData(arrays, f"{path} ({len(next(iter(arrays.values())))} rows)")
    specs = [spec_dict(s) for s in inputs]
    if len(specs) != 1:
        raise UsageError(f"{where}: images feed a graph with one input; this one has {len(specs)} "
                         f"({', '.join(s['name'] for s in specs)}): pass an .npz")
    spec = specs[0]
    from tridesign.data.frames import read_frames

    frames = list(itertools.islice(read_frames(path), MAX_FRAMES))
    array = images_to_input(frames, spec, preprocess or Preprocess(), where)
    return UserData({spec["name"]: array}, f"{path} ({len(frames)} {'images' if path.is_dir() else 'frames'})")


def images_to_input(frames: list[np.ndarray], spec: dict[str, Any], pre: Preprocess, where: str) -> np.ndarray:
    """BGR uint8 frames as rows of the image input `spec` (N, C, H, W) or (N, H, W, C)."""
    import cv2

    shape, dtype = spec["shape"], np.dtype(spec["dtype"])
    if len(shape) != 4 or dtype.kind != "f":
        raise UsageError(f"{where}: images feed a float input of rank 4; {spec['name']!r} is {dtype.name} {list(shape)}")
    channels, height, width = (shape[1], shape[2], shape[3]) if pre.layout == "nchw" else (shape[3], shape[1], shape[2])
    if channels not in (1, 3):
        raise UsageError(f"{where}: input {spec['name']!r} {list(shape)} has {channels} channels in {pre.layout} "
                         "layout, not 1 or 3: give --preprocess layout=nhwc|nchw, or pass an .npz")
    if pre.size is not None:
        for what, want, got in (("height", height, pre.size[0]), ("width", width, pre.size[1])):
            if isinstance(want, int) and want != got:
                raise UsageError(f"--preprocess size={pre.size[0]}x{pre.size[1]}: input {spec['name']!r} takes {what} {want}")
        height, width = pre.size
    if not (isinstance(height, int) and isinstance(width, int)):
        raise UsageError(f"{where}: input {spec['name']!r} {list(shape)} has a symbolic height or width: give --preprocess size=HxW")
    for name, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) not in (1, channels):
            raise UsageError(f"--preprocess {name}: {len(values)} values for {channels} channels (give 1 or {channels})")
    if any(s == 0 for s in pre.std):
        raise UsageError("--preprocess std: a value is 0")
    rows = []
    for frame in frames:
        image = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        if channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
        elif pre.order == "rgb":
            image = image[:, :, ::-1]
        rows.append(image)
    batch = np.stack(rows).astype(np.float32) / 255.0
    batch = (batch - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    if pre.layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=dtype)


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise UsageError(f"--preprocess size={text}: give HxW, e.g. size=224x224")
    return int(height), int(width)


def _floats(key: str, values: list[str]) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise UsageError(f"--preprocess {key}={','.join(values)}: give numbers, e.g. {key}=0.5,0.5,0.5") from None


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise UsageError(f"--preprocess {key}={value}: choose one of: {', '.join(choices)}")
    return value.lower()
