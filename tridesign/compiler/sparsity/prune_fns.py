"""How to prune: mask functions from scores to boolean keep-masks (numpy only).

Every function hits its target exactly where the shape allows it: a layer of n weights pruned to
sparsity s keeps ``round((1 - s) * n)`` weights (ties are broken by position, never by keeping
extra), N:M keeps exactly N of every full group of M, and block pruning keeps whole blocks. The
torch pass and the ONNX pass both call these, so a model pruned either way gets the same masks.
N:M groups run along a conv's input channels at each kernel position (`importance.as_nm_matrix`).

`min_density` is the plan's per-layer floor: a layer of n units (weights, blocks) keeps at least
``ceil(min_density * n)`` of them, its highest-scoring ones. Global ranking reserves each layer's
floor first and ranks the rest for what is left of the budget, so the total still hits the target
whenever the floors fit in it (and is the floors' sum when they do not).
"""

from __future__ import annotations

import math

import numpy as np

from tridesign.compiler.sparsity.importance import as_nm_matrix, block_norms

TENSORRT_N, TENSORRT_M = 2, 4  # the pattern TensorRT's sparse weights need (Ampere and later tensor cores)


def keep_count(size: int, sparsity: float, min_density: float = 0.0) -> int:
    return max(int(round((1.0 - sparsity) * size)), floor_count(size, min_density))


def floor_count(size: int, min_density: float) -> int:
    """How many of `size` units the floor keeps: ``ceil(min_density * size)``, where a product that
    is an integer up to float error (0.07 * 100 = 7.000000000000001) counts as that integer."""
    return min(size, math.ceil(min_density * size - 1e-9)) if min_density > 0 else 0


def topk_mask(scores: np.ndarray, keep: int) -> np.ndarray:
    """Keep exactly the `keep` highest scores (stable on ties)."""
    flat = scores.ravel()
    mask = np.zeros(flat.size, dtype=bool)
    if keep > 0:
        order = np.argsort(-flat, kind="stable")
        mask[order[:keep]] = True
    return mask.reshape(scores.shape)


def layer_mask(scores: np.ndarray, sparsity: float, min_density: float = 0.0) -> np.ndarray:
    """Per-layer pruning: this layer alone loses `sparsity` of its weights (no more than the floor allows)."""
    return topk_mask(scores, keep_count(scores.size, sparsity, min_density))


def global_masks(scores: dict[str, np.ndarray], sparsity: float, min_density: float = 0.0) -> dict[str, np.ndarray]:
    """Global pruning: one ranking over all layers, so layer densities follow the score distribution.

    Each layer's floor is reserved first (its top ``floor_count`` scores) and the global ranking
    fills the rest of the budget from the other weights. Where plain ranking already leaves every
    layer at or above its floor the masks are the same as without one (the reserved weights are
    among those it keeps), so the floor changes only the layers it protects and, to pay for them,
    the weakest survivors elsewhere.
    """
    names = list(scores)
    if not names:
        return {}
    flat = np.concatenate([scores[n].ravel() for n in names])
    keep = np.concatenate([topk_mask(scores[n].ravel(), floor_count(scores[n].size, min_density)) for n in names])
    budget = keep_count(flat.size, sparsity) - int(keep.sum())
    if budget > 0:
        order = np.argsort(-flat, kind="stable")
        keep[order[~keep[order]][:budget]] = True
    masks, start = {}, 0
    for name in names:
        size = scores[name].size
        masks[name] = keep[start : start + size].reshape(scores[name].shape)
        start += size
    return masks


def ratio_masks(
    scores: dict[str, np.ndarray], ratios: dict[str, float], min_density: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-layer pruning at given per-layer sparsities (ZO-GraSP's layer-wise ratios)."""
    return {name: layer_mask(scores[name], ratios[name], min_density) for name in scores}


def block_mask(matrix: np.ndarray, sparsity: float, block: tuple[int, int], min_density: float = 0.0) -> np.ndarray:
    """Keep the blocks of largest L2 norm; a matrix that does not divide is padded, then cropped.
    The floor counts blocks, so every layer keeps at least one block when it is positive."""
    norms = block_norms(matrix, block)
    kept = layer_mask(norms, sparsity, min_density)
    full = np.kron(kept, np.ones(block, dtype=bool)).astype(bool)
    return full[: matrix.shape[0], : matrix.shape[1]]


def nm_mask(matrix: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the N largest of every M consecutive entries of each row of `matrix`.

    Pass the weight's `as_nm_matrix` view to get the sparse-tensor-core layout. A last, shorter
    group (columns not divisible by M) keeps min(N, its length) entries: a conv whose input
    channels per group are fewer than M (a depthwise conv, an RGB stem under 2:4) is one short group
    per kernel position, so a depthwise conv keeps every weight when N >= 1.
    """
    rows, k = matrix.shape
    kp = -(-k // m) * m
    padded = np.full((rows, kp), -np.inf)
    padded[:, :k] = np.abs(matrix)
    groups = padded.reshape(rows, kp // m, m)
    order = np.argsort(-groups, axis=2, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep.reshape(rows, kp)[:, :k]


def is_nm(weight: np.ndarray, n: int, m: int, transposed: bool = False) -> bool:
    """Does every group of M consecutive input channels (or input features) hold at most N non-zeros?

    `weight` is as stored (a conv's (O, I/g, kh, kw) tensor, `transposed` for an (in, out) matrix);
    the groups are those `nm_mask` makes on `as_nm_matrix`, a last, shorter group included, which
    is zero-padded to M as `kernels.formats.NM.pack` pads it.
    """
    matrix = as_nm_matrix(weight, transposed)
    rows, k = matrix.shape
    padded = np.zeros((rows, -(-k // m) * m), dtype=bool)
    padded[:, :k] = matrix != 0
    return bool((padded.reshape(rows, -1, m).sum(axis=2) <= n).all())


def tensorrt_2to4_ready(weight: np.ndarray, transposed: bool = False) -> bool:
    """Can TensorRT run this Conv/Gemm/MatMul weight on 2:4 sparse tensor cores?

    True when its input channels (per group) are a multiple of 4 and every 4 consecutive ones hold
    at most 2 non-zeros at each (out, kh, kw) position (at each output feature for a matrix). The
    check TensorRT's developer guide gives for sparse weights assumes the channel count divides by
    4, so a weight with a ragged last group (a 3-channel stem) is reported not ready rather than
    trusted to however TensorRT pads it. A deployment step asks this before enabling TensorRT's
    sparse weights (`kSPARSE_WEIGHTS`); whether TensorRT then picks a sparse tactic is its choice.
    """
    if weight.ndim < 2 or as_nm_matrix(weight, transposed).shape[1] % TENSORRT_M:
        return False
    return is_nm(weight, TENSORRT_N, TENSORRT_M, transposed)
