"""What to prune: importance scores over weights, blocks and channels (numpy only).

Scores are computed on a weight's 2-D *matrix view* -- rows are output channels, columns the
reduction axis (``in/groups * kh * kw`` for a conv, ``in`` for a linear layer) -- because that
is the matrix the sparse kernels multiply (`tridesign.kernels.formats` packs the same view), so a
block here is a block there.

N:M groups use the *N:M view* instead (`as_nm_matrix`): a conv's rows are (out, kh, kw) positions and
its columns the input channels, the layout NVIDIA's sparse tensor cores run. For a linear, Gemm or
MatMul weight the two views are the same (out, in) matrix, so the CPU N:M kernel, which packs
MatMul/Gemm weights on the matrix view, sees the groups the pruning made.
"""

from __future__ import annotations

import numpy as np


def as_matrix(weight: np.ndarray, transposed: bool = False) -> np.ndarray:
    """(out, reduction) view of a conv (O, I/g, kh, kw) or linear weight; `transposed` for (in, out)."""
    if transposed:
        return weight.T
    return weight.reshape(weight.shape[0], -1)


def from_matrix(matrix: np.ndarray, shape: tuple[int, ...], transposed: bool = False) -> np.ndarray:
    return matrix.T.reshape(shape) if transposed else matrix.reshape(shape)


def as_nm_matrix(weight: np.ndarray, transposed: bool = False) -> np.ndarray:
    """The view whose rows N:M groups run along: (out*kh*kw, in/g) for a conv (O, I/g, kh, kw).

    TensorRT runs a conv on sparse tensor cores only if, at each kernel position of each filter,
    every 4 consecutive input channels hold at most 2 non-zeros (apex ASP's `m4n2_1d` on the same
    permuted view): its implicit GEMM reduces over channels innermost. Grouping the flattened
    (in/g*kh*kw) row instead would mix kernel positions and channels in one group. Any number of
    spatial dimensions works (1-D and 3-D convs too); 2-D weights use `as_matrix` (`transposed`
    for an (in, out) MatMul weight), whose columns are already the input features.
    """
    if weight.ndim <= 2:
        return as_matrix(weight, transposed)
    return np.moveaxis(weight, 1, -1).reshape(-1, weight.shape[1])


def from_nm_matrix(matrix: np.ndarray, shape: tuple[int, ...], transposed: bool = False) -> np.ndarray:
    """Inverse of `as_nm_matrix`: back to the weight's own `shape` (a contiguous array)."""
    if len(shape) <= 2:
        return from_matrix(matrix, shape, transposed)
    by_position = matrix.reshape(shape[0], *shape[2:], shape[1])
    return np.ascontiguousarray(np.moveaxis(by_position, -1, 1))


def magnitude(weight: np.ndarray) -> np.ndarray:
    """L1 magnitude per weight (the tri-design paper's and Han et al.'s criterion)."""
    return np.abs(weight.astype(np.float64))


def block_norms(matrix: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """L2 norm of every (rows x cols) block; the matrix is zero-padded to whole blocks."""
    br, bc = block
    m, k = matrix.shape
    padded = np.zeros((-(-m // br) * br, -(-k // bc) * bc))
    padded[:m, :k] = matrix
    blocks = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc)
    return np.sqrt((blocks**2).sum(axis=(1, 3)))


def channel_l1(weight: np.ndarray) -> np.ndarray:
    """L1 norm of each output channel (filter), the classic filter-pruning criterion (Li et al. 2017)."""
    return np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1)


def grasp_scores(theta: np.ndarray, hg: np.ndarray) -> np.ndarray:
    """GraSP score -theta * (H g): removing weights with the largest score hurts gradient flow least.

    GraSP (Wang et al. 2020) prunes the weights whose removal *increases* gradient flow least; with
    S = -theta * Hg the weights with the highest S are pruned, so the importance is -S.
    """
    return theta * hg
