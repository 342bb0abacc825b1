"""Closed-form compute cycles of a GEMM on an R x C systolic array, per dataflow.

SCALE-Sim's mapping (Samajdar et al., ISPASS 2020) of an (M x K)·(K x N) product:

    dataflow  rows of the array (Sr)  columns (Sc)  streamed in time (T)
    OS        M                       N             K
    WS        K                       N             M
    IS        K                       M             N

The work is cut into ceil(Sr/R)·ceil(Sc/C) folds run one after another. Two counting modes:

* ``scalesim``: SCALE-Sim v2/v3's count, reproduced exactly. Each fold is `T + 2R + C - 2` rows of
  its demand matrices for WS and IS (R cycles of weight preload, then the skewed stream) and
  `T + R + C - 2` for OS; the reported figure is the index of the last cycle (rows - 1), over a
  pre-padded input, once per conv group (SCALE-Sim runs depthwise channels as separate layers).
* ``exact`` (default): the count of the PE array in `pe_array.py`, which moves operands one hop
  per cycle. A fold with r used rows and c used columns takes r cycles to load the stationary
  operand (OS: R cycles to drain the outputs instead), then T + R + c - 2 cycles until its last
  result leaves the bottom of the physical array. Summed over folds this is
  ``Fc·Sr + Fr·Sc + Fr·Fc·(T + R - 2)`` — a number of cycles, not an index, and padding is exact
  because the workload's M comes from ONNX shape inference.

With zero-skipping hardware a pruned weight is never issued: WS and OS compress each output
channel's reduction to its non-zeros, so a column fold runs as long as its densest channel (the lane
imbalance of unstructured sparsity); IS streams output channels, so only all-zero channels are
skipped. The closed form is the dense one with K replaced per column fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# "exact": the cycles the PE array of pe_array.py takes, checked step by step; "scalesim": SCALE-Sim's
# own count, a separate mode so the tool can be cross-checked (see the module docstring).
MODES = ("exact", "scalesim")


@dataclass(frozen=True)
class GemmCycles:
    cycles: int  # for all `groups` GEMMs
    issued_macs: int  # MAC slots issued, zeros that were not skipped included
    folds: int


def _mapping(M: int, K: int, N: int, dataflow: str) -> tuple[int, int, int]:
    if dataflow == "os":
        return M, N, K
    if dataflow == "ws":
        return K, N, M
    if dataflow == "is":
        return K, M, N
    raise ValueError(f"unknown dataflow {dataflow!r}")


def dense_cycles(M: int, K: int, N: int, R: int, C: int, dataflow: str, mode: str = "exact") -> int:
    """Cycles of one dense (M x K)·(K x N) GEMM."""
    Sr, Sc, T = _mapping(M, K, N, dataflow)
    Fr, Fc = math.ceil(Sr / R), math.ceil(Sc / C)
    if mode == "scalesim":
        per_fold = T + R + C - 2 if dataflow == "os" else T + 2 * R + C - 2
        return Fr * Fc * per_fold - 1
    if mode == "exact":
        return Fc * Sr + Fr * Sc + Fr * Fc * (T + R - 2)
    raise ValueError(f"unknown mode {mode!r}")


def gemm_cycles(
    M: int, K: int, N: int, groups: int, R: int, C: int, dataflow: str,
    nnz_per_channel: np.ndarray | None = None, mode: str = "exact",
) -> GemmCycles:
    """Cycles of `groups` GEMMs; `nnz_per_channel` (groups*N non-zero counts) enables zero-skipping."""
    if M == 0 or K == 0 or N == 0:
        return GemmCycles(0, 0, 0)
    Sr, Sc, T = _mapping(M, K, N, dataflow)
    folds = math.ceil(Sr / R) * math.ceil(Sc / C) * groups
    if nnz_per_channel is None or mode == "scalesim":
        cycles = dense_cycles(M, K, N, R, C, dataflow, mode) * groups
        return GemmCycles(cycles, M * K * N * groups, folds)
    nnz = np.asarray(nnz_per_channel, dtype=np.int64).reshape(groups, N)
    if dataflow == "is":
        # Output channels stream through time: only channels with no non-zero at all are skipped.
        kept = (nnz > 0).sum(axis=1)
        cycles = sum(dense_cycles(M, K, int(n), R, C, "is") for n in kept if n > 0)
        return GemmCycles(int(cycles), int(M * K * kept.sum()), folds)
    # WS/OS: channels sit on columns; each column fold is as long as its densest channel.
    pad = (-N) % C
    padded = np.pad(nnz, ((0, 0), (0, pad)))
    k_eff = padded.reshape(groups, -1, C).max(axis=2)  # (groups, column folds)
    used = np.minimum(C, N - np.arange(k_eff.shape[1]) * C)  # columns used by each fold
    if dataflow == "ws":  # Sr = K_eff, T = M: per column fold K_eff + Fr·(c + M + R - 2)
        fr = -(-k_eff // R)
        cycles = k_eff + fr * (used + M + R - 2)
    else:  # OS: Sr = M, T = K_eff: per column fold M + Fr·(c + K_eff + R - 2)
        fr = math.ceil(M / R)
        cycles = np.where(k_eff > 0, M + fr * (used + k_eff + R - 2), 0)
    issued = int((k_eff * used).sum()) * M
    return GemmCycles(int(cycles.sum()), issued, folds)
