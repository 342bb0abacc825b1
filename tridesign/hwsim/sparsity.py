"""What sparsity saves on the accelerator, and what it costs in metadata.

Weight sparsity is only exploited when the device can skip zeros (`sparsity.weight_skipping`); then
each output channel issues only its non-zeros (see `dataflow.gemm_cycles`) and the weights are
stored compressed: values plus indices whose size depends on the pattern (N:M needs log2(M) bits a
value, a block format one index per block, a 3x3 pattern one 5-bit pattern id per kept kernel,
unstructured CSR-like `index_bits` a value plus a row pointer per channel).

Data sparsity comes from the graph's `DataSparsity` record: inactive tiles shrink the pixel
dimension of a spatial layer when `tile_skipping` is on; dropped frames cost nothing when
`frame_skipping` is on (they change throughput and energy per input frame, not a frame's latency).
A record without per-layer fractions applies its one fraction to every spatial layer; a measured
record (`layer_active_fraction`) gives each listed layer its own, leaves unlisted GEMM layers
dense, and lets a vector-unit layer (ReLU, the mask's Mul, a residual Add, pooling) work on the
tiles its inputs have (`layer_tile_fractions`).

`apply_sparsity` makes what-if workloads for sweeps and calibration: it draws masks of a given
pattern and density on the layers' shapes (the same procedure as the compiler's pruning passes
would, on random magnitudes), so no pruned model file is needed to ask "what if 2:4?". What-ifs are
written in the `--prune` grammar (`tridesign.sparsity_plan`), so a what-if names exactly the
pruning a user would then ask the compiler for.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import numpy as np
from rich.markup import escape

from tridesign.annotations import DataSparsity
from tridesign.errors import TridesignError, UsageError
from tridesign.hwsim.spec import DeviceSpec
from tridesign.hwsim.workload import Layer, Workload
from tridesign.progress import stderr
from tridesign.sparsity_plan import (
    NM,
    PATTERN_KEEP,
    Block,
    Channel,
    Method,
    NoSparsity,
    Pattern3x3,
    Unstructured,
    parse_method,
    parse_pattern,
)

PATTERN_ID_BITS = 5  # 21 predefined 4-of-9 patterns (tri-design) need 5 bits
CSR_POINTER_BITS = 32
# The what-if grammar before it became the --prune grammar: block:HxW:R and pattern3x3:R.
_OLD_BLOCK = re.compile(r"block:([0-9]+x[0-9]+):([^:]*)")
_OLD_PATTERN = re.compile(r"pattern3x3:([^:]*)")
DRAWABLE = (NoSparsity, Unstructured, Block, NM, Pattern3x3)


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
    method = parse_pattern(layer.weight_pattern, layer.weight_density)
    if isinstance(method, NM):
        bits = nnz * math.ceil(math.log2(method.m))
    elif isinstance(method, Block):
        bits = nnz / (method.rows * method.cols) * device.sparsity.index_bits
    elif isinstance(method, Pattern3x3):
        bits = nnz / method.keep * PATTERN_ID_BITS
    elif isinstance(method, Channel):
        bits = layer.groups * layer.N
    else:
        bits = nnz * device.sparsity.index_bits + layer.groups * layer.N * CSR_POINTER_BITS
    return values, bits / 8


def layer_tile_fractions(workload: Workload) -> list[float]:
    """The active-tile fraction of each layer as the data-sparsity record gives it (1.0 for a layer
    without H x W); whether a device skips the inactive tiles is the caller's question.

    With per-layer fractions, a listed layer takes its own; a vector-unit layer not listed takes
    the largest fraction among its inputs' producers (it computes wherever any input is active: a
    ReLU or the mask's Mul after a masked conv, a residual Add of two masked branches), and any
    other layer is dense. A name that is no layer of the graph means the record was measured on
    another model, and is refused.
    """
    ds = workload.data_sparsity
    layers = workload.layers
    if ds is None:
        return [1.0] * len(layers)
    if not ds.layer_active_fraction:
        return [ds.active_tile_fraction if layer.spatial else 1.0 for layer in layers]
    listed = ds.layer_active_fraction
    unknown = sorted(set(listed) - {layer.name for layer in layers})
    if unknown:
        raise TridesignError(f"the data-sparsity record names {len(unknown)} layer(s) that {workload.name} does not "
                             f"have (first: {unknown[0]}): it was measured on another model")
    by_tensor: dict[str, float] = {}
    out = []
    for layer in layers:
        if not layer.spatial:
            fraction = 1.0
        elif layer.name in listed:
            fraction = listed[layer.name]
        elif layer.kind == "vector":
            fraction = max((by_tensor[t] for t, _ in layer.inputs if t in by_tensor), default=1.0)
        else:
            fraction = 1.0
        by_tensor[layer.output] = fraction
        out.append(fraction)
    return out


def frame_keep(workload: Workload, device: DeviceSpec) -> float:
    ds = workload.data_sparsity
    return ds.frame_keep_fraction if ds is not None and device.sparsity.frame_skipping else 1.0


def parse_what_if(text: str) -> Method:
    """A `--weights` what-if in the `--prune` grammar, plus `dense` (= `none`).

    The old spellings `block:HxW:R` and `pattern3x3:R` still read, each with one note on stderr
    naming the new spelling, in the same form as the CLI's other notes: a DeprecationWarning is
    hidden from CLI users, and a FutureWarning prints a second line of our source code.
    """
    spec = text.strip().lower()
    if spec == "dense":
        return NoSparsity()
    if old := _OLD_BLOCK.fullmatch(spec):
        spec = f"block:{old[2]}:{old[1]}"
    elif old := _OLD_PATTERN.fullmatch(spec):
        spec = f"pattern:{PATTERN_KEEP}:{old[1]}"
    if old:
        stderr.print(f"[yellow]note:[/] the what-if spelling {escape(text.strip())} is deprecated; "
                     f"write {escape(spec)}, as for --prune", highlight=False, soft_wrap=True)
    return parse_method(spec if old else text)


@dataclass(frozen=True)
class SparsitySetting:
    """A what-if: weight pattern (e.g. from `parse_what_if`) and data sparsity.

    Channel and ZO-GraSP pruning are refused here, before any work: the first reshapes the model
    and the second needs its loss, so neither can be drawn on random magnitudes.
    """

    weights: Method = NoSparsity()
    active_tile_fraction: float = 1.0
    frame_keep_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.weights, DRAWABLE):
            raise UsageError(
                f"what-if masks cannot be drawn for {self.weights.text}: use dense, unstructured, block, nm or pattern"
            )

    @property
    def label(self) -> str:
        return f"w={self.weights.text},tiles={self.active_tile_fraction:g},frames={self.frame_keep_fraction:g}"


def apply_sparsity(workload: Workload, setting: SparsitySetting, seed: int = 0) -> Workload:
    """A copy of `workload` with masks drawn for `setting` on every weight of a GEMM layer.

    Each layer is ranked on its own magnitudes, whatever an unstructured scope says: on independent
    random magnitudes a global ranking gives each layer the same fraction in expectation.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for layer in workload.layers:
        new = copy.copy(layer)
        if layer.kind == "gemm" and layer.weight_name is not None and not isinstance(setting.weights, NoSparsity):
            mask = _draw_mask(setting.weights, layer, rng)
            new.weight_mask = mask
            new.weight_density = float(mask.mean())
            new.weight_pattern = setting.weights.pattern
        layers.append(new)
    ds = DataSparsity(
        active_tile_fraction=setting.active_tile_fraction, frame_keep_fraction=setting.frame_keep_fraction,
        source=f"what-if {setting.label}",
    )
    return Workload(workload.name, layers, ds)


def _draw_mask(method: Method, layer: Layer, rng: np.random.Generator) -> np.ndarray:
    rows, K = layer.groups * layer.N, layer.K
    magnitude = np.abs(rng.standard_normal((rows, K)))
    if isinstance(method, NM):
        return _nm(magnitude, method, layer.kernel_elems)
    if isinstance(method, Unstructured):
        return magnitude >= np.quantile(magnitude, method.sparsity)
    if isinstance(method, Block):
        bh, bw = method.shape
        blocks = np.abs(rng.standard_normal((math.ceil(rows / bh), math.ceil(K / bw))))
        kept = blocks >= np.quantile(blocks, method.sparsity)
        return np.kron(kept, np.ones((bh, bw), dtype=bool))[:rows, :K].astype(bool)
    return _pattern3x3(magnitude, method.sparsity, layer)  # the last of DRAWABLE but dense


def _nm(magnitude: np.ndarray, method: NM, kernel_elems: int) -> np.ndarray:
    """N of every M consecutive input channels at each kernel position, as the compiler prunes a conv
    (the layout TensorRT's sparse tensor cores run); along K for a matmul (`kernel_elems` 1).

    A row of K is channel-major (in/g, kernel), so the channels of one kernel position are `kernel_elems`
    apart; a last, shorter group keeps min(N, its length), as in the compiler.
    """
    rows, K = magnitude.shape
    by_position = magnitude.reshape(rows, -1, kernel_elems).transpose(0, 2, 1)  # (rows, kernel, in/g)
    channels = by_position.shape[2]
    pad = (-channels) % method.m
    grouped = np.pad(by_position, ((0, 0), (0, 0), (0, pad)), constant_values=-np.inf)
    grouped = grouped.reshape(rows, kernel_elems, -1, method.m)
    keep = np.argsort(-grouped, axis=3)[..., :method.n]
    mask = np.zeros_like(grouped, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=3)
    return mask.reshape(rows, kernel_elems, -1)[:, :, :channels].transpose(0, 2, 1).reshape(rows, K)


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
