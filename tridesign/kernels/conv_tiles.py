"""Which register tile each dense convolution runs with: measured by `tune`, remembered per target.

The dense conv kernel (`tir_dense_conv`) has two knobs, so tuning it is a handful of measurements
per layer shape rather than MetaSchedule's thousands: every candidate tile that fits the layer is
compiled and timed on random data, and the fastest is recorded in `conv_tiles.json` next to the
MetaSchedule records of the same target (one database directory, one `--db`). `compile` reads the
book; a layer nobody measured gets the default tile (R × VW filling eight vector registers), and
the manifest says how many did.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.atomic import write_bytes_atomic
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.tir_dense_conv import ConvTile, dense_conv2d_consts, dense_conv2d_func

BOOK_FILE = "conv_tiles.json"
CANDIDATES = (
    ConvTile(4, 32), ConvTile(8, 32), ConvTile(4, 64), ConvTile(8, 16),
    ConvTile(16, 16), ConvTile(4, 16), ConvTile(16, 8), ConvTile(8, 8),
)


@dataclass(frozen=True)
class ConvLayer:
    """One dense conv layer as the kernel sees it (shapes, geometry, fused epilogue)."""

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    geom: ConvGeometry
    relu: bool
    residual: bool

    def key(self) -> str:
        g = self.geom
        return (
            f"x{'x'.join(map(str, self.x_shape))}_w{'x'.join(map(str, self.w_shape))}_s{g.stride[0]}{g.stride[1]}"
            f"_p{g.padding[0]}{g.padding[1]}_d{g.dilation[0]}{g.dilation[1]}_relu{int(self.relu)}_res{int(self.residual)}"
        )

    @property
    def out_width(self) -> int:
        return self.geom.output_hw(self.x_shape[2], self.x_shape[3], self.w_shape[2:])[1]


def vector_floats(target: Any) -> int:
    """Floats in one SIMD register of the target's CPU (AVX-512: 16, AVX2: 8, NEON/SSE: 4)."""
    mcpu = str(target.attrs.get("mcpu", "")) if target is not None else ""
    if mcpu in ("x86-64-v4",) or any(k in mcpu for k in ("avx512", "skylake-avx512", "icelake", "sapphirerapids", "znver4", "znver5", "cascadelake", "cooperlake", "tigerlake")):
        return 16
    if mcpu.startswith("x86-64-v3") or any(k in mcpu for k in ("haswell", "broadwell", "skylake", "znver")):
        return 8
    return 4


def candidates(layer: ConvLayer) -> list[ConvTile]:
    """The tiles worth measuring: the channel count divides, and the columns do not overshoot the row."""
    ow = layer.out_width
    return [t for t in CANDIDATES if t.fits(layer.w_shape[0]) and t.columns <= max(8, 2 * ow)]


def default_tile(layer: ConvLayer, target: Any) -> ConvTile:
    """Eight vector registers of accumulators, as wide as the output row allows."""
    budget = 8 * vector_floats(target)
    ow, co = layer.out_width, layer.w_shape[0]
    columns = 32 if ow >= 28 else 16 if ow > 8 else 8
    columns = min(columns, budget // 4)  # at least four output channels share each input load
    rows = max(1, budget // columns)
    while co % rows:
        rows -= 1
    return ConvTile(rows, columns)


def time_tile(layer: ConvLayer, tile: ConvTile, target: Any, repeat: int = 7) -> float:
    """Median ms of one call of the layer's kernel with `tile` (random data; time_evaluator)."""
    import tvm

    kf = dense_conv2d_func(layer.x_shape, layer.w_shape, layer.geom, tile, layer.relu, layer.residual)
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=target)
    rng = np.random.default_rng(0)
    dev = tvm.cpu()
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    res = rng.standard_normal(kf.out_shape).astype(np.float32) if layer.residual else np.zeros(1, np.float32)
    args = [tvm.runtime.tensor(a, dev) for a in (x, res, *dense_conv2d_consts(w, None, tile))]
    args.append(tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32), dev))
    timer = lib.mod.time_evaluator(kf.name, dev, number=5, repeat=repeat, min_repeat_ms=5)
    return float(np.median(timer(*args).results) * 1e3)


@dataclass
class TileBook:
    """The measured best tile per layer key, stored as `conv_tiles.json` in a tuning database dir."""

    path: Path | None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaulted: int = 0

    @classmethod
    def load(cls, db_dir: Path | None) -> TileBook:
        if db_dir is None:
            return cls(None)
        path = Path(db_dir) / BOOK_FILE
        entries = json.loads(path.read_text()) if path.exists() else {}
        return cls(path, entries)

    def tile_for(self, layer: ConvLayer, target: Any) -> ConvTile:
        entry = self.entries.get(layer.key())
        if entry is not None:
            return ConvTile(*entry["tile"])
        self.defaulted += 1
        return default_tile(layer, target)

    def measure_missing(self, layers: list[ConvLayer], target: Any) -> int:
        """Measure every layer shape the book does not hold yet; returns how many were measured."""
        todo = {layer.key(): layer for layer in layers if layer.key() not in self.entries}
        for layer in todo.values():
            self.measure(layer, target)
        return len(todo)

    def measure(self, layer: ConvLayer, target: Any) -> dict[str, Any]:
        """Time every candidate tile of the layer here and remember the fastest."""
        times = {f"{t.channels}x{t.columns}": time_tile(layer, t, target) for t in candidates(layer)}
        best = min(times, key=times.get)
        entry = {"tile": [int(v) for v in best.split("x")], "ms": {k: round(v, 5) for k, v in times.items()}}
        self.entries[layer.key()] = entry
        return entry

    def save(self) -> None:
        if self.path is None:
            return
        os.makedirs(self.path.parent, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
