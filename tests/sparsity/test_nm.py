"""N:M semi-structured sparsity in the layout NVIDIA's sparse tensor cores run.

A conv's groups are M consecutive input channels at each (out, kh, kw) position (TensorRT's rule,
apex ASP's `m4n2_1d`); a Gemm/MatMul/Linear weight's run along its input features.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from tridesign.compiler.sparsity import prune_onnx, prune_torch
from tridesign.compiler.sparsity.apply import Weight, compute_records
from tridesign.compiler.sparsity.importance import as_nm_matrix, from_nm_matrix
from tridesign.compiler.sparsity.prune_fns import is_nm, nm_mask, tensorrt_2to4_ready
from tridesign.kernels.formats import NM
from tridesign.sparsity_plan import load_plan

from .conftest import export_check
from .test_onnx_prune import user_model


def _prune(values: np.ndarray, spec: str, transposed: bool = False) -> np.ndarray:
    """The kept mask `compute_records` (the torch and ONNX passes' one path) gives one weight."""
    return compute_records({"w": Weight(values, transposed)}, load_plan(spec))["w"].mask


def _channel_groups(values: np.ndarray, m: int) -> list[np.ndarray]:
    """Each (out, kh, kw) position's runs of M consecutive input channels, sliced from the 4-D tensor."""
    out, cin, kh, kw = values.shape
    return [values[o, c : c + m, i, j] for o in range(out) for i in range(kh) for j in range(kw)
            for c in range(0, cin, m)]


conv_shapes = st.tuples(st.integers(1, 5), st.integers(1, 13), st.integers(1, 3), st.integers(1, 3))
nm_specs = st.sampled_from([(2, 4), (1, 4), (2, 8), (4, 8)])


@settings(max_examples=60, deadline=None)
@given(shape=conv_shapes, nm=nm_specs, seed=st.integers(0, 2**16))
def test_conv_groups_run_along_input_channels(shape: tuple[int, ...], nm: tuple[int, int], seed: int) -> None:
    """At every (out, kh, kw): each run of M input channels keeps min(N, run) entries, the largest."""
    n, m = nm
    values = np.random.default_rng(seed).standard_normal(shape)
    mask = _prune(values, f"nm:{n}:{m}")
    assert mask.shape == values.shape
    for kept, group in zip(_channel_groups(mask, m), _channel_groups(np.abs(values), m)):
        assert kept.sum() == min(n, group.size)
        assert group[kept].min() >= group[~kept].max(initial=-np.inf)
    assert is_nm(values * mask, n, m)
    if shape[1] % m == 0:
        assert mask.mean() == pytest.approx(n / m)


@settings(max_examples=30, deadline=None)
@given(shape=conv_shapes, seed=st.integers(0, 2**16))
def test_nm_view_round_trips(shape: tuple[int, ...], seed: int) -> None:
    values = np.random.default_rng(seed).standard_normal(shape)
    view = as_nm_matrix(values)
    out, cin, kh, kw = shape
    assert view.shape == (out * kh * kw, cin)
    assert np.array_equal(view[((out - 1) * kh + kh - 1) * kw + kw - 1], values[out - 1, :, kh - 1, kw - 1])
    assert np.array_equal(from_nm_matrix(view, shape), values)


def test_a_3x3_conv_pruned_2_4_is_tensorrt_ready_and_the_flattened_layout_is_not() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        values = rng.standard_normal((16, 32, 3, 3))
        assert tensorrt_2to4_ready(values * _prune(values, "nm:2:4"))
        flat = values.reshape(16, -1)
        assert not tensorrt_2to4_ready(values * nm_mask(flat, 2, 4).reshape(values.shape))


def test_tensorrt_2to4_ready_refuses_dense_ragged_and_other_patterns() -> None:
    rng = np.random.default_rng(1)
    assert not tensorrt_2to4_ready(rng.standard_normal((8, 16, 3, 3)))  # dense
    stem = rng.standard_normal((8, 3, 3, 3))  # 3 channels: 2:4 holds, but C % 4 != 0
    assert is_nm(stem * _prune(stem, "nm:2:4"), 2, 4) and not tensorrt_2to4_ready(stem * _prune(stem, "nm:2:4"))
    wide = rng.standard_normal((8, 16, 3, 3))
    assert tensorrt_2to4_ready(wide * _prune(wide, "nm:1:4"))  # 1:4 is also at most 2 of 4
    assert not tensorrt_2to4_ready(wide * _prune(wide, "nm:4:8"))  # 4 of 8 can put 3 or 4 in one half


def test_grouped_and_depthwise_convs_group_their_channels_per_group() -> None:
    """Weights are (O, I/g, kh, kw): groups run along I/g; a depthwise conv (I/g = 1) is one short
    group per position and keeps every weight."""
    rng = np.random.default_rng(2)
    grouped = rng.standard_normal((8, 8, 3, 3))  # e.g. 16 input channels in 2 groups
    mask = _prune(grouped, "nm:2:4")
    assert all(g.sum() == 2 for g in _channel_groups(mask, 4)) and tensorrt_2to4_ready(grouped * mask)
    depthwise = rng.standard_normal((8, 1, 3, 3))
    assert _prune(depthwise, "nm:2:4").all()


@pytest.mark.parametrize(("shape", "transposed"), [((6, 12), False), ((12, 6), True)])
def test_linear_and_matmul_group_along_input_features(shape: tuple[int, int], transposed: bool) -> None:
    """(out, in) Linear/Gemm-transB and (in, out) MatMul weights: groups along `in` either way."""
    values = np.random.default_rng(3).standard_normal(shape)
    mask = _prune(values, "nm:2:4", transposed)
    rows = mask.T if transposed else mask  # (out, in)
    assert (rows.reshape(6, 3, 4).sum(axis=2) == 2).all()
    assert is_nm(values * mask, 2, 4, transposed) and tensorrt_2to4_ready(values * mask, transposed)


def test_onnx_matmul_and_gemm_masks_pack_for_the_cpu_nm_kernel() -> None:
    """The Relax rewrite packs a MatMul/Gemm weight's (out, in) rows with `NM.pack`; it must not raise."""
    model = user_model()
    prune_onnx(model, load_plan("nm:2:4"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for rows in (inits["wm"].T, inits["wg"]):
        packed = NM.pack(rows, 2, 4)
        assert np.array_equal(packed.unpack(), rows)
    assert tensorrt_2to4_ready(inits["wm"], transposed=True) and tensorrt_2to4_ready(inits["wg"])
    assert is_nm(inits["wc"], 2, 4)  # the 3-channel conv: one short group per (out, kh, kw)
    onnx.checker.check_model(model)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (2, 8)])
def test_nm_mask_exact_per_group(n: int, m: int) -> None:
    mat = np.random.default_rng(2).standard_normal((6, 10 * m))
    mask = nm_mask(mat, n, m)
    assert (mask.reshape(6, 10, m).sum(axis=2) == n).all()
    # the kept entries are the largest of their group
    groups = np.abs(mat).reshape(6, 10, m)
    kmask = mask.reshape(6, 10, m)
    assert (np.where(kmask, groups, np.inf).min(axis=2) >= np.where(kmask, -np.inf, groups).max(axis=2)).all()


def test_ragged_tail_group() -> None:
    mask = nm_mask(np.arange(1, 7, dtype=float)[None], 2, 4)  # groups [1..4] and a tail [5, 6]
    assert mask.tolist() == [[False, False, True, True, True, True]]
    assert not is_nm(np.array([[0.0, 0, 0, 0, 1, 1, 1]]), 2, 4)  # a tail of 3 holding 3 is not 2:4


def test_nm_pruned_resnet_holds_2_4_and_packs(resnet, example) -> None:
    report = prune_torch(resnet, load_plan("nm:2:4"), example)
    export_check(resnet, example)
    for name, rec in report.records.items():
        assert is_nm(rec.values, 2, 4), name
        NM.pack(as_nm_matrix(rec.values), 2, 4)  # raises when a group holds more than N non-zeros
        assert tensorrt_2to4_ready(rec.values) == (name != "conv1.weight"), name
    # the 3-input-channel stem: one group of 3 channels per (out, kh, kw), keeping 2
    assert report.records["conv1.weight"].density == pytest.approx(2 / 3)
    assert report.records["fc.weight"].density == pytest.approx(0.5)
