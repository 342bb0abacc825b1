"""Which register tile each dense convolution runs with: measured by `tune`, remembered per target.

The dense conv kernel (`tir_dense_conv`) has a few knobs (the tile's channels, rows and columns,
and the algorithm), so tuning it is a handful of measurements per layer shape rather than
MetaSchedule's thousands: every candidate tile that fits the layer and the target's vector
registers is compiled and timed on random data, and the fastest is recorded in `conv_tiles.json`
next to the MetaSchedule records of the same target (one database directory, one `--db`).
`compile` reads the book; a layer nobody measured gets the default tile (`default_tile`), and the
manifest says how many did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.atomic import file_lock, write_bytes_atomic
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_dense_conv import ConvTile, dense_conv2d_consts, dense_conv2d_func
from tridesign.kernels.tir_winograd_conv import winograd_applies, winograd_conv2d_consts, winograd_conv2d_func

BOOK_FILE = "conv_tiles.json"
LOCK_FILE = ".lock"  # the tuning database's lock: the tile book's saves and MetaSchedule's tuning runs (compiler.tvm.tuning)
# Direct tiles: channels × columns, or channels × rows × columns for maps narrower than a tile's
# vectors, or channels × pixels with the vectors across channels. Which of them a target measures is
# cut by its vector registers (`candidates`).
CANDIDATES = (
    ConvTile(4, 32), ConvTile(8, 32), ConvTile(4, 64), ConvTile(8, 16), ConvTile(16, 16), ConvTile(4, 16),
    ConvTile(16, 8), ConvTile(8, 8), ConvTile(6, 16), ConvTile(12, 16), ConvTile(6, 32),
    ConvTile(4, 8, rows=2), ConvTile(6, 8, rows=2), ConvTile(8, 8, rows=2),
    ConvTile(16, 4, across_channels=True), ConvTile(16, 6, across_channels=True),
    ConvTile(32, 6, across_channels=True), ConvTile(16, 12, across_channels=True),
)
WINOGRAD_CANDIDATES = (
    ConvTile(16, 16, True), ConvTile(8, 16, True), ConvTile(8, 32, True), ConvTile(16, 8, True),
    ConvTile(4, 16, True), ConvTile(8, 8, True),
    ConvTile(16, 4, True, across_channels=True), ConvTile(16, 6, True, across_channels=True),
    ConvTile(32, 6, True, across_channels=True), ConvTile(32, 12, True, across_channels=True),
)
# Winograd's fixed costs (transforms, 16/9 of the weights) are not repaid by layers with few channels
# or tiles; measured on a 2-core Zen 4 (AVX-512) VM, inside the networks: 1.7–1.9× faster than the direct
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
    def out_height(self) -> int:
        return self.geom.output_hw(self.x_shape[2], self.x_shape[3], self.w_shape[2:])[0]

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
        return winograd_conv2d_func(
            layer.x_shape, layer.w_shape, tile.channels, tile.columns, layer.relu, layer.residual, tile.across_channels
        )
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
    return _vector_file(target)[0]


def vector_registers(target: Any) -> int:
    """Architectural vector registers of the target's CPU: 32 with AVX-512 or on AArch64, else 16."""
    return _vector_file(target)[1]


def _vector_file(target: Any) -> tuple[int, int]:
    from tvm.target import codegen

    if target is None or target.kind.name != "llvm":
        return 4, 16
    if "aarch64" in str(target.attrs.get("mtriple", "")):
        return 4, 32
    features = codegen.llvm_get_cpu_features(target)
    if "avx512f" in features:
        return 16, 32
    return (8 if "avx" in features else 4), 16


def accumulator_budget(target: Any) -> int:
    """Vector registers a tile's accumulators may take: all but four, which hold the loaded inputs
    and the broadcast weight (a tile over the budget spills accumulators to the stack every tap)."""
    return vector_registers(target) - 4


def candidates(layer: ConvLayer, target: Any) -> list[ConvTile]:
    """The tiles worth measuring: the accumulators fit the target's registers, the columns of a row
    tile do not overshoot the row (for Winograd: the layer's tiles), tiles of several rows only
    where one row is no wider than the tile; Winograd ones only where it may pay (see
    `winograd_may_pay`)."""
    ow, oh, co = layer.out_width, layer.out_height, layer.w_shape[0]
    floats, budget = vector_floats(target), accumulator_budget(target)
    direct = [
        t for t in CANDIDATES
        if t.fits(co, oh)
        and t.registers(floats) <= budget
        and (t.across_channels or (t.columns <= max(8, 2 * ow) and (t.rows == 1 or ow <= t.columns)))
    ]
    if not winograd_may_pay(layer):
        return direct
    winograd = [
        t for t in WINOGRAD_CANDIDATES
        if t.fits(co, oh) and t.registers(floats) <= budget and t.columns <= max(8, layer.winograd_tiles)
    ]
    return direct + winograd


def winograd_may_pay(layer: ConvLayer) -> bool:
    """Winograd applies and the layer has enough channels and tiles to repay its transforms.

    Also where `tune` measures: timed alone, Winograd won some small layers its transform scratch
    stays cache-hot for (ResNet-20's 16×16×32 on a Zen 3 VM: 27.9 vs 31.0 µs), and inside the
    network lost them (ResNet-20 1.085× ORT with two such layers on Winograd).
    """
    return layer.winograd and layer.x_shape[1] >= WINOGRAD_MIN_CHANNELS and layer.winograd_tiles >= WINOGRAD_MIN_TILES


def default_tile(layer: ConvLayer, target: Any) -> ConvTile:
    """What an unmeasured layer runs with: Winograd where it pays (see WINOGRAD_MIN_*), else a direct
    tile of a default number of accumulator registers (below): across two vectors of channels where the
    output row is not a whole number of vectors (7, 14, 28 columns: a row tile would waste lanes),
    else as wide as the row allows (a power of two, shared by at least four channels), two rows at
    a time where a row of at most 8 columns fills at most one vector.

    Row tiles take 8 accumulator registers. Channel tiles take 12 where the CPU has 16 and 8 where
    it has 32 (AVX-512, NEON: measured on a Zen 4 VM). Measured on a Zen 3 (AVX2) VM with each conv
    one parallel region: 8-register row tiles ran ResNet-20's layers 5–10% faster than 12-register
    ones (16×32×32: 27.9 vs 30.7 µs as 4×16 and 6×16; 64×8×8: 26.0 vs 28.0 as 4×2×8 and 6×2×8),
    while 12-register channel tiles ran ResNet-18's stride-2 layers 11–16% faster than 8-register
    ones and beat row tiles on its 7-, 14- and 28-column maps by 30–60%. Winograd's products take
    12 across two vectors of channels on 16-register CPUs (Zen 3: 11–35% faster layers than 8×8
    row tiles) and 16 channels × one vector of tiles on 32-register ones (measured on the Zen 4 VM).
    """
    floats, registers = vector_floats(target), vector_registers(target)
    co, oh, ow = layer.w_shape[0], layer.out_height, layer.out_width
    across = 12 if registers <= 16 else 8  # accumulators of a channel tile
    if winograd_may_pay(layer):
        tile = ConvTile(16, floats, True) if registers >= 32 else ConvTile(2 * floats, across // 2, True, across_channels=True)
        if co % tile.channels == 0:
            return tile
    if ow % floats and co >= 2 * floats:  # rows of a whole number of vectors? else vectors across channels
        return ConvTile(2 * floats, across // 2, across_channels=True)
    accumulators = 8
    columns = 1 << (min(32 if ow >= 28 else 16 if ow > 8 else 8, accumulators * floats // 4).bit_length() - 1)
    vectors = -(-columns // floats)
    rows = 2 if ow <= min(floats, 8) and oh % 2 == 0 else 1  # a row fills at most one vector
    return ConvTile(max(1, min(co, accumulators // (vectors * rows))), columns, rows=rows)


def time_tiles(layer: ConvLayer, tiles: list[ConvTile], target: Any, rounds: int = 4) -> dict[str, float]:
    """ms of one call of the layer's kernel with each tile (random data; time_evaluator): the best of
    `rounds` rounds that each time every tile once.

    Interleaved, because this kind of machine has slow phases lasting seconds to minutes: timed one
    after another, a tile measured in a slow phase lost to worse ones (ResNet-20's 8×8 layers went
    to Winograd and the network got slower). Noise only adds time, so the minimum is kept.
    """
    import tvm

    rng = np.random.default_rng(0)
    dev = tvm.cpu()
    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    w = rng.standard_normal(layer.w_shape).astype(np.float32)
    timers = {}
    for tile in tiles:
        kf = conv_kernel(layer, tile, target)
        lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=target)
        res = rng.standard_normal(kf.out_shape).astype(np.float32) if layer.residual else np.zeros(1, np.float32)
        args = [tvm.runtime.tensor(a, dev) for a in (x, res, *conv_consts(w, None, tile))]
        args.append(tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32), dev))
        timers[tile.label] = (lib.mod.time_evaluator(kf.name, dev, number=5, repeat=2, min_repeat_ms=5), args)
    best = {label: float("inf") for label in timers}
    for _ in range(rounds):
        for label, (timer, args) in timers.items():
            best[label] = min(best[label], min(timer(*args).results) * 1e3)
    return best


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
            channels, columns, *rest = entry["tile"]  # [R, VW, winograd, rows, across]; older books lack the last three
            rest += [0, 1, 0][len(rest):]
            return ConvTile(channels, columns, bool(rest[0]), rest[1], bool(rest[2]))
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
        tiles = candidates(layer, target)
        times = time_tiles(layer, tiles, target)
        best = min(tiles, key=lambda t: times[t.label])
        entry = {"tile": [best.channels, best.columns, int(best.winograd), best.rows, int(best.across_channels)], "ms": {k: round(v, 5) for k, v in times.items()}}
        self.entries[layer.key()] = entry
        return entry

    def save(self) -> None:
        """Write the book, merged with what other processes saved since it was loaded (their
        layers kept, this one's measurements winning), under the database directory's lock."""
        if self.path is None:
            return
        with file_lock(self.path.parent / LOCK_FILE):
            on_disk = json.loads(self.path.read_text()) if self.path.exists() else {}
            self.entries = {**on_disk, **self.entries}
            write_bytes_atomic(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
