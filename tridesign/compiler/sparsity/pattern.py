"""The tri-design paper's 3x3 pattern pruning (ASP-DAC'23), kernel by kernel.

After global L1-magnitude pruning (90 % at the paper's operating point) every 3x3 kernel is
re-shaped: all nine zero -> the kernel is removed (stays zero); five or more zeros -> replaced by
the library pattern of four entries that keeps the largest L2 norm of the *original* weights;
otherwise (fewer than five zeros) the kernel is restored dense. Restoring dense kernels and
rounding sparse ones to four survivors moves the real sparsity away from the nominal ratio, so the
pass reports the real one.

The paper uses 21 predefined 4-of-9 patterns but does not publish them (*assumption*): our
library holds the 21 most compact 4-connected four-entry shapes through the kernel centre
(PatDNN's observation that the centre weight matters most), ranked by the summed distance of
their entries from the centre, ties broken by position. The library is a constant, so hardware
decoding a 5-bit pattern id sees the same set every time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

LIBRARY_SIZE = 21
MIN_ZEROS_FOR_PATTERN = 5


def _connected(cells: tuple[tuple[int, int], ...]) -> bool:
    cellset, seen, stack = set(cells), {cells[0]}, [cells[0]]
    while stack:
        r, c = stack.pop()
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            nxt = (r + dr, c + dc)
            if nxt in cellset and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen) == len(cellset)


def _library() -> np.ndarray:
    cells = [(r, c) for r in range(3) for c in range(3)]
    shapes = [p for p in itertools.combinations(cells, 4) if (1, 1) in p and _connected(p)]
    shapes.sort(key=lambda p: (sum(np.hypot(r - 1, c - 1) for r, c in p), p))
    library = np.zeros((LIBRARY_SIZE, 3, 3), dtype=bool)
    for i, shape in enumerate(shapes[:LIBRARY_SIZE]):
        for r, c in shape:
            library[i, r, c] = True
    return library


PATTERNS: np.ndarray = _library()
"""(21, 3, 3) boolean keep-patterns, four True entries each."""


@dataclass(frozen=True)
class PatternStats:
    """What happened to the kernels of one weight."""

    removed: int  # all-zero kernels
    patterned: int  # replaced by a library pattern
    dense: int  # restored dense
    pattern_ids: np.ndarray  # per kernel: library index, -1 removed, -2 dense

    @property
    def kernels(self) -> int:
        return self.removed + self.patterned + self.dense


def pattern_mask(weight: np.ndarray, magnitude_mask: np.ndarray) -> tuple[np.ndarray, PatternStats]:
    """Turn the magnitude mask of a (O, I, 3, 3) weight into the tri-design pattern mask."""
    out, cin = weight.shape[:2]
    kernels = weight.reshape(-1, 3, 3).astype(np.float64)
    keep = magnitude_mask.reshape(-1, 3, 3)
    zeros = 9 - keep.sum(axis=(1, 2))
    # kept L2 energy of every kernel under every pattern: (kernels, patterns)
    energy = np.einsum("kij,pij->kp", kernels**2, PATTERNS.astype(np.float64))
    best = energy.argmax(axis=1)
    removed = zeros == 9
    patterned = (zeros >= MIN_ZEROS_FOR_PATTERN) & ~removed
    mask = np.ones_like(keep)
    mask[removed] = False
    mask[patterned] = PATTERNS[best[patterned]]
    ids = np.where(removed, -1, np.where(patterned, best, -2))
    stats = PatternStats(int(removed.sum()), int(patterned.sum()), int((~removed & ~patterned).sum()), ids)
    return mask.reshape(out, cin, 3, 3), stats


def is_pattern_conv(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2:] == (3, 3)
