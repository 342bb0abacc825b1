"""Packed weight and data sparsity formats consumed by the sparse kernels.

Each format is a frozen dataclass of numpy arrays with `pack` (dense → packed), `unpack`
(packed → dense, the round trip the tests check) and `footprint_bytes()` (values + metadata, the
memory a deployment really pays; compare with `dense.nbytes`). Index arrays are int32 because
that is what the TIR kernels index with; a deployment could narrow them, the footprint states
what we store.

Shapes that do not divide by the block (BSR) or group (N:M) are padded with zeros inside the
format and remember their logical shape, so odd layer sizes need no special casing in callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tridesign.errors import UsageError


def _nbytes(*arrays: np.ndarray) -> int:
    return int(sum(a.nbytes for a in arrays))


@dataclass(frozen=True)
class CSR:
    """Compressed sparse rows of a 2-D matrix (a conv weight is flattened to [out, in/g*kh*kw])."""

    shape: tuple[int, int]
    indptr: np.ndarray  # int32 [rows + 1]
    indices: np.ndarray  # int32 [nnz], column of each value
    data: np.ndarray  # float32 [nnz]

    @classmethod
    def pack(cls, dense: np.ndarray) -> CSR:
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2:
            raise UsageError(f"CSR packs 2-D matrices, got shape {dense.shape}")
        rows, cols = np.nonzero(dense)
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
        return cls(dense.shape, indptr, cols.astype(np.int32), dense[rows, cols].astype(np.float32))

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    def unpack(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    def footprint_bytes(self) -> int:
        return _nbytes(self.indptr, self.indices, self.data)


@dataclass(frozen=True)
class BSR:
    """Block sparse rows with a configurable (rows × cols) block; zero blocks are not stored.

    The logical shape may not divide by the block: the packed matrix is zero-padded to
    `padded_shape` and kernels must ignore rows/cols beyond `shape`.
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    indptr: np.ndarray  # int32 [block rows + 1]
    indices: np.ndarray  # int32 [nnz blocks], block column
    data: np.ndarray  # float32 [nnz blocks, block rows, block cols]

    @classmethod
    def pack(cls, dense: np.ndarray, block: tuple[int, int]) -> BSR:
        dense = np.asarray(dense, dtype=np.float32)
        br, bc = block
        if dense.ndim != 2 or br < 1 or bc < 1:
            raise UsageError(f"BSR packs 2-D matrices with positive blocks, got {dense.shape} / {block}")
        m, k = dense.shape
        mp, kp = -(-m // br) * br, -(-k // bc) * bc
        padded = np.zeros((mp, kp), dtype=np.float32)
        padded[:m, :k] = dense
        blocks = padded.reshape(mp // br, br, kp // bc, bc).transpose(0, 2, 1, 3)
        keep = np.any(blocks != 0, axis=(2, 3))
        brow, bcol = np.nonzero(keep)
        indptr = np.zeros(mp // br + 1, dtype=np.int32)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        data = np.ascontiguousarray(blocks[brow, bcol], dtype=np.float32).reshape(-1, br, bc)
        return cls((m, k), (br, bc), indptr, bcol.astype(np.int32), data)

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (-(-self.shape[0] // self.block[0]) * self.block[0], -(-self.shape[1] // self.block[1]) * self.block[1])

    @property
    def nnz_blocks(self) -> int:
        return int(self.indices.size)

    def block_density(self) -> float:
        mp, kp = self.padded_shape
        total = (mp // self.block[0]) * (kp // self.block[1])
        return self.nnz_blocks / total if total else 0.0

    def unpack(self) -> np.ndarray:
        br, bc = self.block
        mp, kp = self.padded_shape
        blocks = np.zeros((mp // br, kp // bc, br, bc), dtype=np.float32)
        brow = np.repeat(np.arange(mp // br), np.diff(self.indptr))
        blocks[brow, self.indices] = self.data
        return blocks.transpose(0, 2, 1, 3).reshape(mp, kp)[: self.shape[0], : self.shape[1]].copy()

    def footprint_bytes(self) -> int:
        return _nbytes(self.indptr, self.indices, self.data)


@dataclass(frozen=True)
class NM:
    """N:M compressed rows (e.g. 2:4): in every group of M consecutive columns keep N values.

    `values[r, g*N + j]` sits at column `g*M + indices[r, g*N + j]`; groups with fewer than N
    non-zeros store explicit zeros so every row has the same length (what the hardware formats
    and our kernel assume). Packing a matrix that is not N:M sparse is a usage error.
    """

    shape: tuple[int, int]
    n: int
    m: int
    values: np.ndarray  # float32 [rows, groups * n]
    indices: np.ndarray  # uint8 [rows, groups * n], position inside the group

    @classmethod
    def pack(cls, dense: np.ndarray, n: int = 2, m: int = 4) -> NM:
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2 or not 0 < n <= m <= 255:
            raise UsageError(f"N:M packs 2-D matrices with 0 < N <= M, got {dense.shape} / {n}:{m}")
        rows, k = dense.shape
        kp = -(-k // m) * m
        padded = np.zeros((rows, kp), dtype=np.float32)
        padded[:, :k] = dense
        groups = padded.reshape(rows, kp // m, m)
        if int((groups != 0).sum(axis=2).max(initial=0)) > n:
            raise UsageError(f"matrix is not {n}:{m} sparse (a group of {m} holds more than {n} non-zeros)")
        # Stable sort puts non-zeros first in column order; keep the first n positions of each group.
        order = np.argsort(groups == 0, axis=2, kind="stable")[:, :, :n]
        order = np.sort(order, axis=2)
        values = np.take_along_axis(groups, order, axis=2).reshape(rows, -1)
        return cls((rows, k), n, m, np.ascontiguousarray(values), order.reshape(rows, -1).astype(np.uint8))

    def unpack(self) -> np.ndarray:
        rows, k = self.shape
        groups_count = self.values.shape[1] // self.n
        groups = np.zeros((rows, groups_count, self.m), dtype=np.float32)
        idx = self.indices.reshape(rows, groups_count, self.n).astype(np.int64)
        np.put_along_axis(groups, idx, self.values.reshape(rows, groups_count, self.n), axis=2)
        return groups.reshape(rows, -1)[:, :k].copy()

    def footprint_bytes(self) -> int:
        return _nbytes(self.values, self.indices)


@dataclass(frozen=True)
class TileMask:
    """Which output tiles of a feature map are computed (data sparsity); the rest reuse old outputs.

    The map of `height × width` is cut into `tile × tile` cells (edge cells may be smaller);
    `active` is the boolean grid. Kernels take `active_ids()`, the row-major ids of active cells.
    """

    height: int
    width: int
    tile: tuple[int, int]
    active: np.ndarray  # bool [tiles_y, tiles_x]

    @classmethod
    def pack(cls, pixel_mask: np.ndarray, tile: tuple[int, int]) -> TileMask:
        """A tile is active when any of its pixels is set in the (height, width) boolean mask."""
        pixel_mask = np.asarray(pixel_mask, dtype=bool)
        h, w = pixel_mask.shape
        th, tw = tile
        ty, tx = -(-h // th), -(-w // tw)
        padded = np.zeros((ty * th, tx * tw), dtype=bool)
        padded[:h, :w] = pixel_mask
        return cls(h, w, (th, tw), padded.reshape(ty, th, tx, tw).any(axis=(1, 3)))

    @property
    def grid(self) -> tuple[int, int]:
        return (-(-self.height // self.tile[0]), -(-self.width // self.tile[1]))

    def active_ids(self) -> np.ndarray:
        return np.flatnonzero(self.active.ravel()).astype(np.int32)

    def active_fraction(self) -> float:
        return float(self.active.mean()) if self.active.size else 0.0

    def unpack(self) -> np.ndarray:
        """The (height, width) pixel mask covered by the active tiles."""
        th, tw = self.tile
        full = np.repeat(np.repeat(self.active, th, axis=0), tw, axis=1)
        return full[: self.height, : self.width].copy()

    def footprint_bytes(self) -> int:
        """Bit-packed grid, the size a deployment ships per frame."""
        return int(np.packbits(self.active.ravel()).nbytes)
