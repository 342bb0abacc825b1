"""What to prune: importance scores over weights, blocks and channels (numpy only).

Scores are computed on a weight's 2-D *matrix view* -- rows are output channels, columns the
reduction axis (``in/groups * kh * kw`` for a conv, ``in`` for a linear layer) -- because that
is the matrix the sparse kernels multiply (`tridesign.kernels.formats` packs the same view), so a
block or an N:M group here is a block or a group there.
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
