"""MOT-challenge text files: ground truth in, tracker results out.

One line per box, comma separated, 1-based frame numbers and pixel coordinates:

* ground truth (MOT16/17 `gt.txt`): ``frame,id,left,top,width,height,conf,class,visibility``;
  ``conf`` 0 marks a box the benchmark ignores;
* results (and MOT15 ground truth): ``frame,id,left,top,width,height,score,x,y,z`` with the world
  coordinates ``-1``.

The reader takes 6 to 10 columns (the same number on every line) so that both kinds and the short
forms some tools write load; every defect is refused with one line naming the file and the line,
because a silently misread ground truth would only show up later as a wrong MOTA.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tridesign.atomic import atomic_file
from tridesign.errors import TridesignError, UsageError

MIN_COLUMNS, MAX_COLUMNS = 6, 10


@dataclass(frozen=True)
class MotRow:
    """One MOT line. `left`/`top` are 1-based (pixel (0, 0) of the image is (1, 1) here);
    `cls` and `visibility` are -1 where the file has no such column (results, MOT15)."""

    frame: int
    ident: int
    left: float
    top: float
    width: float
    height: float
    conf: float = 1.0
    cls: int = -1
    visibility: float = -1.0

    @classmethod
    def from_xyxy(cls, frame: int, ident: int, box: Sequence[float], score: float) -> MotRow:
        """A result row from a 0-based (x1, y1, x2, y2) box in frame pixels, as the tracker keeps it."""
        x1, y1, x2, y2 = (float(v) for v in box)
        return cls(frame, ident, x1 + 1, y1 + 1, x2 - x1, y2 - y1, float(score))

    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as 0-based (x1, y1, x2, y2) frame pixels, the inverse of `from_xyxy`."""
        return self.left - 1, self.top - 1, self.left - 1 + self.width, self.top - 1 + self.height

    def result_line(self) -> str:
        return (f"{self.frame},{self.ident},{self.left:.2f},{self.top:.2f},{self.width:.2f},{self.height:.2f},"
                f"{self.conf:.4f},-1,-1,-1")


def read_mot(path: str | Path) -> list[MotRow]:
    """Every row of a MOT file, in file order; anything that is not MOT format is one line of error."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"MOT file {path} does not exist")
    if not path.is_file():
        raise UsageError(f"MOT file {path} is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise TridesignError(f"{path} is not a MOT file: it is not text") from None
    except OSError as err:
        raise TridesignError(f"cannot read {path}: {err.strerror}") from None
    rows: list[MotRow] = []
    columns = 0
    seen: set[tuple[int, int]] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if not columns:
            columns = len(fields)
            if not MIN_COLUMNS <= columns <= MAX_COLUMNS:
                raise TridesignError(f"{path}:{number}: not a MOT file: {columns} columns, expected "
                                     f"{MIN_COLUMNS} to {MAX_COLUMNS} (frame,id,left,top,width,height,...)")
        elif len(fields) != columns:
            raise TridesignError(f"{path}:{number}: {len(fields)} columns where the first line has {columns}")
        row = _parse(fields, f"{path}:{number}")
        if (row.frame, row.ident) in seen:
            raise TridesignError(f"{path}:{number}: id {row.ident} appears twice in frame {row.frame}")
        seen.add((row.frame, row.ident))
        rows.append(row)
    if not rows:
        raise TridesignError(f"{path} is not a MOT file: it has no rows")
    return rows


def _parse(fields: list[str], where: str) -> MotRow:
    try:
        values = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        raise TridesignError(f"{where}: not a number: {bad!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise TridesignError(f"{where}: values must be finite numbers")
    frame, ident, left, top, width, height = values[:6]
    if frame != int(frame) or frame < 1:
        raise TridesignError(f"{where}: frame must be an integer >= 1 (MOT frames are 1-based), got {fields[0]}")
    if ident != int(ident) or ident < 1:
        raise TridesignError(f"{where}: id must be an integer >= 1, got {fields[1]}")
    if width < 0 or height < 0:
        raise TridesignError(f"{where}: width and height must not be negative, got {fields[4]}x{fields[5]}")
    conf = values[6] if len(values) > 6 else 1.0
    # 10 columns is the results / MOT15 layout, whose columns 8-10 are world coordinates.
    cls = int(values[7]) if 8 <= len(values) <= 9 else -1
    visibility = values[8] if len(values) == 9 else -1.0
    return MotRow(int(frame), int(ident), left, top, width, height, conf, cls, visibility)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_results(path: str | Path, rows: Iterable[MotRow]) -> None:
    """Write `rows` as a MOT results file (sorted by frame, then id), atomically."""
    ordered = sorted(rows, key=lambda r: (r.frame, r.ident))
    with atomic_file(Path(path), "w") as handle:
        handle.writelines(row.result_line() + "\n" for row in ordered)
