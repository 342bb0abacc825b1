"""Step-by-step simulation of a systolic PE array, for small layers.

Registers are updated once per cycle: streamed operands move one PE to the right, partial sums
one PE down, and a PE multiplies whatever sits in its registers that cycle. Nothing is indexed by a
formula: if an operand arrived one cycle late, the product would pair the wrong numbers and the
output would be wrong. The simulator therefore returns the computed matrix and the cycle count,
and the tests demand both `out == A @ B` and `cycles == dataflow.dense_cycles(..., "exact")`.

It is O(cycles · R · C) in Python-level numpy steps: use it on layers of a few thousand MACs;
the closed form in `dataflow.py` is what `simulate` uses.
"""

from __future__ import annotations

import numpy as np


def _stationary_fold(S: np.ndarray, X: np.ndarray, R: int, C: int) -> tuple[np.ndarray, int]:
    """Stationary operand S (r x c) held in the PEs; rows of X (T x r) streamed in from the left.

    Returns out (T x c) with out[t, j] = sum_i X[t, i] * S[i, j], and the cycles the fold took.
    """
    r, c = S.shape
    T = X.shape[0]
    weights = np.zeros((R, C))
    cycle = 0
    # Preload: rows are pushed in from the top and shift down one row per cycle; the row meant for
    # row r-1 goes in first, so after r cycles row i holds S[i].
    for i in reversed(range(r)):
        weights[1:] = weights[:-1].copy()
        weights[0] = 0.0
        weights[0, :c] = S[i]
        cycle += 1
    a_reg = np.zeros((R, C))  # streamed operand, moves right
    p_reg = np.zeros((R, C))  # partial sums, move down
    out = np.zeros((T, c))
    collected = 0
    t = 0
    while collected < T * c:
        a_new = np.empty_like(a_reg)
        a_new[:, 1:] = a_reg[:, :-1]
        for i in range(R):  # skewed injection: row i sees stream element t - i this cycle
            a_new[i, 0] = X[t - i, i] if i < r and 0 <= t - i < T else 0.0
        p_in = np.zeros((R, C))
        p_in[1:] = p_reg[:-1]
        p_reg = p_in + a_new * weights
        a_reg = a_new
        for j in range(c):  # results leave the bottom of the physical array
            m = t - (R - 1) - j
            if 0 <= m < T:
                out[m, j] = p_reg[R - 1, j]
                collected += 1
        t += 1
    return out, cycle + t


def _output_stationary_fold(A: np.ndarray, B: np.ndarray, R: int, C: int) -> tuple[np.ndarray, int]:
    """A (r x K) enters from the left, B (K x c) from the top; PE (i, j) accumulates out[i, j]."""
    r, K = A.shape
    c = B.shape[1]
    a_reg = np.zeros((R, C))
    b_reg = np.zeros((R, C))
    acc = np.zeros((R, C))
    a_valid = np.zeros((R, C), dtype=bool)
    b_valid = np.zeros((R, C), dtype=bool)
    macs_done = np.zeros((R, C), dtype=np.int64)
    t = 0
    while macs_done[:r, :c].min() < K:
        a_new = np.empty_like(a_reg)
        a_new[:, 1:] = a_reg[:, :-1]
        b_new = np.empty_like(b_reg)
        b_new[1:, :] = b_reg[:-1, :]
        valid_a = np.zeros((R, C), dtype=bool)
        valid_a[:, 1:] = a_valid[:, :-1]
        valid_b = np.zeros((R, C), dtype=bool)
        valid_b[1:, :] = b_valid[:-1, :]
        for i in range(R):
            ok = i < r and 0 <= t - i < K
            a_new[i, 0] = A[i, t - i] if ok else 0.0
            valid_a[i, 0] = ok
        for j in range(C):
            ok = j < c and 0 <= t - j < K
            b_new[0, j] = B[t - j, j] if ok else 0.0
            valid_b[0, j] = ok
        acc += a_new * b_new
        macs_done += valid_a & valid_b
        a_reg, b_reg, a_valid, b_valid = a_new, b_new, valid_a, valid_b
        t += 1
    out = np.zeros((r, c))
    for s in range(R):  # drain: outputs shift down one row per cycle and leave at the bottom
        row = R - 1 - s
        if row < r:
            out[row] = acc[R - 1, :c]
        acc[1:] = acc[:-1].copy()
        acc[0] = 0.0
    return out, t + R


def simulate_gemm(A: np.ndarray, B: np.ndarray, R: int, C: int, dataflow: str) -> tuple[np.ndarray, int]:
    """Run A (M x K) @ B (K x N) fold by fold on an R x C array; return (output, cycles)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    M, K = A.shape
    N = B.shape[1]
    out = np.zeros((M, N))
    cycles = 0
    if dataflow == "os":
        for m0 in range(0, M, R):
            for n0 in range(0, N, C):
                part, cyc = _output_stationary_fold(A[m0:m0 + R], B[:, n0:n0 + C], R, C)
                out[m0:m0 + R, n0:n0 + C] = part
                cycles += cyc
        return out, cycles
    if dataflow == "ws":  # B tiles stationary, rows of A streamed, K split over row folds
        for n0 in range(0, N, C):
            for k0 in range(0, K, R):
                part, cyc = _stationary_fold(B[k0:k0 + R, n0:n0 + C], A[:, k0:k0 + R], R, C)
                out[:, n0:n0 + C] += part
                cycles += cyc
        return out, cycles
    if dataflow == "is":  # Aᵀ tiles stationary, columns of B streamed: computes outᵀ
        for m0 in range(0, M, C):
            for k0 in range(0, K, R):
                part, cyc = _stationary_fold(A[m0:m0 + C, k0:k0 + R].T, B[k0:k0 + R, :].T, R, C)
                out[m0:m0 + C, :] += part.T
                cycles += cyc
        return out, cycles
    raise ValueError(f"unknown dataflow {dataflow!r}")



def check_layers(workload, device, dataflow: str, max_macs: int = 200_000, seed: int = 0) -> list[dict]:
    """Run every GEMM layer of at most `max_macs` MACs (one group) through the PE array with random
    operands; report its cycles next to the closed form's and whether values and cycles agree."""
    from tridesign.hwsim.dataflow import dense_cycles

    rng = np.random.default_rng(seed)
    rows = []
    for layer in workload.layers:
        if layer.kind != "gemm" or layer.M * layer.K * layer.N > max_macs:
            continue
        A = rng.standard_normal((layer.M, layer.K))
        B = rng.standard_normal((layer.K, layer.N))
        out, stepped = simulate_gemm(A, B, device.array_rows, device.array_cols, dataflow)
        closed = dense_cycles(layer.M, layer.K, layer.N, device.array_rows, device.array_cols, dataflow)
        rows.append({"layer": layer.name, "stepped_cycles": stepped, "closed_form_cycles": closed,
                     "values_ok": bool(np.allclose(out, A @ B)), "agree": stepped == closed})
    return rows
