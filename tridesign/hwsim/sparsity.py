"""What sparsity saves on the accelerator, and what it costs in metadata.

Weight sparsity is only exploited when the device can skip zeros (`sparsity.weight_skipping`); then
each output channel issues only its non-zeros (see `dataflow.gemm_cycles`) and the weights are
stored compressed: values plus indices whose size depends on the pattern (N:M needs log2(M) bits a
value, a block format one index per block, a 3x3 pattern one 5-bit pattern id per kept kernel,
unstructured CSR-like `index_bits` a value plus a row pointer per channel).

Data sparsity comes from the graph's `DataSparsity` record: inactive tiles shrink the pixel
dimension of every spatial layer when `tile_skipping` is on; dropped frames cost nothing when
`frame_skipping` is on (they change throughput and energy per input frame, not a frame's latency).

`apply_sparsity` makes what-if workloads for sweeps and calibration: it draws masks of a given
pattern and density on the layers' shapes (the same procedure as the compiler's pruning passes
would, on random magnitudes), so no pruned model file is needed to ask "what if 2:4?".
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import numpy as np

from tridesign.annotations import DataSparsity
from tridesign.errors import UsageError
from tridesign.hwsim.spec import DeviceSpec
from tridesign.hwsim.workload import Layer, Workload

PATTERN_ID_BITS = 5  # 21 predefined 4-of-9 patterns (tri-design) need 5 bits
CSR_POINTER_BITS = 32


def channel_nnz(layer: Layer, device: DeviceSpec) -> np.ndarray | None:
    """Non-zeros per output channel when the device skips zeros and the weight is sparse, else None."""
    if not device.sparsity.weight_skipping or layer.weight_density >= 1.0 or layer.kind != "gemm":
        return None
    if layer.weight_mask is not None:
        return layer.weight_mask.sum(axis=1)
    return np.full(layer.groups * layer.N, math.ceil(layer.K * layer.weight_density), dtype=np.int64)


def weight_bytes(layer: Layer, device: DeviceSpec, compressed: bool = True) -> tuple[float, float]:
    """(value bytes, metadata bytes) of the layer's weight: compressed when the device skips zeros
    (and `compressed`), else dense."""
    dense = layer.filter_elems * device.word_bytes
    if not compressed or channel_nnz(layer, device) is None:
        return dense, 0.0
    nnz = layer.filter_elems * layer.weight_density
    values = nnz * device.word_bytes
    pattern = layer.weight_pattern
    if pattern.startswith("nm:"):
        m = int(pattern.split(":")[2])
        bits = nnz * math.ceil(math.log2(m))
    elif pattern.startswith("block:"):
        bh, bw = (int(v) for v in re.findall(r"\d+", pattern)[:2])
        bits = nnz / (bh * bw) * device.sparsity.index_bits
    elif pattern.startswith("pattern3x3"):
        bits = nnz / 4 * PATTERN_ID_BITS
    elif pattern.startswith("channel"):
        bits = layer.groups * layer.N
    else:
        bits = nnz * device.sparsity.index_bits + layer.groups * layer.N * CSR_POINTER_BITS
    return values, bits / 8


def tile_fraction(workload: Workload, device: DeviceSpec) -> float:
    ds = workload.data_sparsity
    return ds.active_tile_fraction if ds is not None and device.sparsity.tile_skipping else 1.0


def frame_keep(workload: Workload, device: DeviceSpec) -> float:
    ds = workload.data_sparsity
    return ds.frame_keep_fraction if ds is not None and device.sparsity.frame_skipping else 1.0


@dataclass(frozen=True)
class SparsitySetting:
    """A what-if: weight pattern (`dense`, `unstructured:0.9`, `nm:2:4`, `block:4x4:0.8`,
    `pattern3x3:0.9` -- the number is the pruned fraction) and data sparsity."""

    weights: str = "dense"
    active_tile_fraction: float = 1.0
    frame_keep_fraction: float = 1.0

    @property
    def label(self) -> str:
        return f"w={self.weights},tiles={self.active_tile_fraction:g},frames={self.frame_keep_fraction:g}"


def apply_sparsity(workload: Workload, setting: SparsitySetting, seed: int = 0) -> Workload:
    """A copy of `workload` with masks drawn for `setting` on every weight of a GEMM layer."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in workload.layers:
        new = copy.copy(layer)
        if layer.kind == "gemm" and layer.weight_name is not None and setting.weights != "dense":
            mask = _draw_mask(setting.weights, layer, rng)
            new.weight_mask = mask
            new.weight_density = float(mask.mean())
            new.weight_pattern = setting.weights.rsplit(":", 1)[0] if ":" in setting.weights else setting.weights
            if setting.weights.startswith("nm:"):
                new.weight_pattern = setting.weights
        layers.append(new)
    ds = DataSparsity(
        active_tile_fraction=setting.active_tile_fraction, frame_keep_fraction=setting.frame_keep_fraction,
        source=f"what-if {setting.label}",
    )
    return Workload(workload.name, layers, ds)


def _draw_mask(spec: str, layer: Layer, rng: np.random.Generator) -> np.ndarray:
    rows, K = layer.groups * layer.N, layer.K
    magnitude = np.abs(rng.standard_normal((rows, K)))
    kind, _, rest = spec.partition(":")
    try:
        if kind == "nm":
            n, m = (int(v) for v in rest.split(":"))
            pad = (-K) % m
            grouped = np.pad(magnitude, ((0, 0), (0, pad))).reshape(rows, -1, m)
            keep = np.argsort(-grouped, axis=2)[:, :, :n]
            mask = np.zeros_like(grouped, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=2)
            return mask.reshape(rows, -1)[:, :K]
        if kind == "unstructured":
            return magnitude >= np.quantile(magnitude, float(rest))
        if kind == "block":
            shape, ratio = rest.split(":")
            bh, bw = (int(v) for v in shape.split("x"))
            blocks = np.abs(rng.standard_normal((math.ceil(rows / bh), math.ceil(K / bw))))
            kept = blocks >= np.quantile(blocks, float(ratio))
            return np.kron(kept, np.ones((bh, bw), dtype=bool))[:rows, :K].astype(bool)
        if kind == "pattern3x3":
            return _pattern3x3(magnitude, float(rest), layer)
    except ValueError:
        pass
    raise UsageError(f"bad weight sparsity {spec!r}: use dense, unstructured:R, nm:N:M, block:HxW:R or pattern3x3:R")


def _pattern3x3(magnitude: np.ndarray, ratio: float, layer: Layer) -> np.ndarray:
    """Tri-design's rule: global magnitude pruning, then per 3x3 kernel: all zero -> removed;
    >= 5 zeros -> its 4 largest survive (a 4-of-9 pattern); otherwise restored dense."""
    mask = magnitude >= np.quantile(magnitude, ratio)
    if layer.K % 9:
        return mask
    kernels = magnitude.reshape(-1, 9)
    kmask = mask.reshape(-1, 9)
    zeros = 9 - kmask.sum(axis=1)
    out = np.ones_like(kmask)
    top4 = np.argsort(-kernels, axis=1)[:, :4]
    patterned = np.zeros_like(kmask)
    np.put_along_axis(patterned, top4, True, axis=1)
    out[zeros >= 5] = patterned[zeros >= 5]
    out[zeros == 9] = False
    return out.reshape(mask.shape)
