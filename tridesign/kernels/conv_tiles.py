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
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_dense_conv import ConvTile, dense_conv2d_consts, dense_conv2d_func
from tridesign.kernels.tir_winograd_conv import winograd_applies, winograd_conv2d_consts, winograd_conv2d_func

BOOK_FILE = "conv_tiles.json"
CANDIDATES = (
    ConvTile(4, 32), ConvTile(8, 32), ConvTile(4, 64), ConvTile(8, 16),
    ConvTile(16, 16), ConvTile(4, 16), ConvTile(16, 8), ConvTile(8, 8),
)
WINOGRAD_CANDIDATES = (ConvTile(16, 16, True), ConvTile(8, 16, True), ConvTile(8, 32, True), ConvTile(16, 8, True))
# Winograd's fixed costs (transforms, 16/9 of the weights) are not repaid by layers with few channels
# or tiles; measured on this 2-core AVX-512 VM, inside the networks: 1.7–1.9× faster than the direct
# kernel on ResNet-18's 56×56×64 and 28×28×128 layers, 1.6× on 14×14×256 (49 tiles), slower on
# ResNet-20's 16×16×32 (32.6 vs 29 µs) and 32×32×16.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_TILES = 32


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

    @property
    def winograd(self) -> bool:
        """Whether the Winograd kernel computes this layer at all (3×3, stride 1, even map)."""
        return winograd_applies(self.x_shape, self.w_shape, self.geom)

    @property
    def winograd_tiles(self) -> int:
        """2×2 output tiles of the layer (its whole batch)."""
        return self.x_shape[0] * (self.x_shape[2] // 2) * (self.x_shape[3] // 2)


def conv_kernel(layer: ConvLayer, tile: ConvTile, target: Any) -> KernelFunc:
    """The kernel running `layer` with `tile`: (x, residual, weight, bias) -> y for either algorithm."""
    if tile.winograd:
        return winograd_conv2d_func(layer.x_shape, layer.w_shape, tile.channels, tile.columns, layer.relu, layer.residual)
    cores = int(target.attrs.get("num-cores", 1)) if target is not None else 1
    return dense_conv2d_func(layer.x_shape, layer.w_shape, layer.geom, tile, layer.relu, layer.residual, cores)


def conv_consts(weight: np.ndarray, bias: np.ndarray | None, tile: ConvTile) -> list[np.ndarray]:
    """The packed constant arguments of `conv_kernel` (weight transformed for Winograd)."""
    if tile.winograd:
        return winograd_conv2d_consts(weight, bias, tile.channels)
    return dense_conv2d_consts(weight, bias, tile)


def vector_floats(target: Any) -> int:
    """Floats in one SIMD register of the target's CPU (AVX-512: 16, AVX: 8, otherwise SSE/NEON: 4).

    Read from the CPU features LLVM derives from the target's triple, mcpu and mattr
    (`llvm_get_vector_width` answers 512 for every x86 CPU in TVM 0.27, so it is not used).
    """
    from tvm.target import codegen

    if target is None or target.kind.name != "llvm":
        return 4
    features = codegen.llvm_get_cpu_features(target)
    if "avx512f" in features:
        return 16
    return 8 if "avx" in features else 4


def candidates(layer: ConvLayer) -> list[ConvTile]:
    """The tiles worth measuring: the channel count divides, and the columns do not overshoot the
    row (for Winograd: the layer's tiles); Winograd ones only where that kernel applies."""
    ow, co = layer.out_width, layer.w_shape[0]
    direct = [t for t in CANDIDATES if t.fits(co) and t.columns <= max(8, 2 * ow)]
    if not layer.winograd:
        return direct
    return direct + [t for t in WINOGRAD_CANDIDATES if t.fits(co) and t.columns <= max(8, layer.winograd_tiles)]


def default_tile(layer: ConvLayer, target: Any) -> ConvTile:
    """Winograd with 16 × one vector of tiles where it pays (see WINOGRAD_MIN_*), else the direct
    kernel with eight vector registers of accumulators, as wide as the output row allows."""
    floats = vector_floats(target)
    co = layer.w_shape[0]
    if (
        layer.winograd
        and layer.x_shape[1] >= WINOGRAD_MIN_CHANNELS
        and layer.winograd_tiles >= WINOGRAD_MIN_TILES
        and co % 16 == 0
    ):
        return ConvTile(16, floats, True)
    budget = 8 * floats
    ow = layer.out_width
    columns = 32 if ow >= 28 else 16 if ow > 8 else 8
    columns = min(columns, budget // 4)  # at least four output channels share each input load
    rows = max(1, budget // columns)
    while co % rows:
        rows -= 1
    return ConvTile(rows, columns)


def time_tile(layer: ConvLayer, tile: ConvTile, target: Any, repeat: int = 7) -> float:
    """Median ms of one call of the layer's kernel with `tile` (random data; time_evaluator)."""
    import tvm

    kf = conv_kernel(layer, tile, target)
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=target)
    rng = np.random.default_rng(0)
    dev = tvm.cpu()
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    res = rng.standard_normal(kf.out_shape).astype(np.float32) if layer.residual else np.zeros(1, np.float32)
    args = [tvm.runtime.tensor(a, dev) for a in (x, res, *conv_consts(w, None, tile))]
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
            channels, columns, *winograd = entry["tile"]
            return ConvTile(channels, columns, bool(winograd and winograd[0]))
        self.defaulted += 1
        return default_tile(layer, target)

    def missing(self, layers: list[ConvLayer]) -> list[ConvLayer]:
        """One layer per shape the book does not hold yet."""
        return list({layer.key(): layer for layer in layers if layer.key() not in self.entries}.values())

    def measure_missing(self, layers: list[ConvLayer], target: Any) -> int:
        """Measure every layer shape the book does not hold yet; returns how many were measured."""
        todo = self.missing(layers)
        for layer in todo:
            self.measure(layer, target)
        return len(todo)

    def measure(self, layer: ConvLayer, target: Any) -> dict[str, Any]:
        """Time every candidate tile of the layer here and remember the fastest."""
        tiles = candidates(layer)
        times = {t.label: time_tile(layer, t, target) for t in tiles}
        best = min(tiles, key=lambda t: times[t.label])
        entry = {"tile": [best.channels, best.columns, int(best.winograd)], "ms": {k: round(v, 5) for k, v in times.items()}}
        self.entries[layer.key()] = entry
        return entry

    def save(self) -> None:
        if self.path is None:
            return
        os.makedirs(self.path.parent, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
