import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tridesign.hwsim import scalesim_ref
from tridesign.hwsim.dataflow import dense_cycles, gemm_cycles
from tridesign.hwsim.pe_array import simulate_gemm

needs_scalesim = pytest.mark.skipif(not scalesim_ref.available(), reason="scalesim package not installed")


def test_exact_count_golden_by_hand():
    # WS, (5x3)@(3x4) on 2x3: folds (r, c) = (2,3), (1,3), (2,1), (1,1); each r + M + R + c - 2.
    by_hand = sum(r + 5 + 2 + c - 2 for r in (2, 1) for c in (3, 1))
    assert by_hand == 34
    assert dense_cycles(5, 3, 4, 2, 3, "ws") == by_hand
    # OS: folds over M (r) and N (c), each K + r + c - 2 + R (drain through all R rows).
    assert dense_cycles(5, 3, 4, 2, 3, "os") == sum(3 + r + c - 2 + 2 for r in (2, 2, 1) for c in (3, 1))


def test_scalesim_golden():
    # 5x5 input, 3x3x2 kernel, 3 filters, stride 1 on 4x4 WS: M=9, K=18, N=3 -> 5 folds of
    # T + 2R + C - 2 = 19 rows; SCALE-Sim reports the last row's index.
    assert dense_cycles(9, 18, 3, 4, 4, "ws", "scalesim") == 5 * 19 - 1


@needs_scalesim
def test_scalesim_golden_against_package():
    assert scalesim_ref.conv_compute_cycles("ws", 4, 4, 5, 5, 3, 3, 2, 3, 1) == 94


@needs_scalesim
@settings(max_examples=25, deadline=None)
@given(
    df=st.sampled_from(["ws", "os", "is"]), R=st.integers(1, 8), C=st.integers(1, 8),
    fh=st.integers(1, 3), fw=st.integers(1, 3), extra_h=st.integers(0, 6), extra_w=st.integers(0, 6),
    c=st.integers(1, 4), k=st.integers(1, 9), s=st.integers(1, 3),
)
def test_scalesim_mode_matches_scalesim(df, R, C, fh, fw, extra_h, extra_w, c, k, s):
    ih, iw = fh + extra_h, fw + extra_w
    ref = scalesim_ref.conv_compute_cycles(df, R, C, ih, iw, fh, fw, c, k, s)
    M = math.ceil((ih - fh + s) / s) * math.ceil((iw - fw + s) / s)
    assert dense_cycles(M, fh * fw * c, k, R, C, df, "scalesim") == ref


@settings(max_examples=40, deadline=None)
@given(
    df=st.sampled_from(["ws", "os", "is"]), M=st.integers(1, 9), K=st.integers(1, 9), N=st.integers(1, 9),
    R=st.integers(1, 5), C=st.integers(1, 5), seed=st.integers(0, 2**16),
)
def test_pe_array_agrees_with_closed_form(df, M, K, N, R, C, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    out, cycles = simulate_gemm(A, B, R, C, df)
    np.testing.assert_allclose(out, A @ B, rtol=1e-9, atol=1e-9)
    assert cycles == dense_cycles(M, K, N, R, C, df)


@settings(max_examples=60, deadline=None)
@given(
    df=st.sampled_from(["ws", "os", "is"]), M=st.integers(1, 300), K=st.integers(1, 300), N=st.integers(1, 300),
    R=st.integers(1, 64), C=st.integers(1, 64), groups=st.integers(1, 4),
)
def test_cycles_at_least_macs_over_pes(df, M, K, N, R, C, groups):
    g = gemm_cycles(M, K, N, groups, R, C, df)
    assert g.cycles >= M * K * N * groups / (R * C)
    assert g.issued_macs <= R * C * g.cycles


@settings(max_examples=60, deadline=None)
@given(
    df=st.sampled_from(["ws", "os", "is"]), M=st.integers(1, 200), K=st.integers(1, 200), N=st.integers(1, 40),
    R=st.integers(1, 32), C=st.integers(1, 32), groups=st.integers(1, 3), seed=st.integers(0, 2**16),
)
def test_zero_skipping_never_adds_cycles(df, M, K, N, R, C, groups, seed):
    dense = gemm_cycles(M, K, N, groups, R, C, df)
    full = gemm_cycles(M, K, N, groups, R, C, df, np.full(groups * N, K))
    assert full.cycles == dense.cycles  # the sparse formula reduces to the dense one
    nnz = np.random.default_rng(seed).integers(0, K + 1, groups * N)
    sparse = gemm_cycles(M, K, N, groups, R, C, df, nnz)
    assert sparse.cycles <= dense.cycles
    assert sparse.issued_macs <= R * C * max(sparse.cycles, 1)
    assert sparse.issued_macs >= M * int(nnz.sum()) or df == "is"


def test_scalesim_mode_is_an_index_not_a_count():
    # A full fold (r = R, c = C): the same cycles, but SCALE-Sim reports the last index.
    assert dense_cycles(8, 4, 4, 4, 4, "ws", "scalesim") == dense_cycles(8, 4, 4, 4, 4, "ws") - 1
