"""Loading user ONNX files: old opsets, foldable constants, awkward names, broken files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tridesign.compiler import onnx_io
from tridesign.verification import run_onnxruntime
from tridesign.errors import TridesignError


def test_normalize_upgrades_folds_and_keeps_numbers(tmp_path, user_model):
    model = user_model(11)
    path = tmp_path / "user.onnx"
    onnx.save(model, str(path))
    loaded = onnx_io.load_onnx(path)
    normalized = onnx_io.normalize(loaded)
    assert onnx_io.default_opset(normalized) == 17
    assert len(normalized.graph.node) == 2  # the constant Add is folded away
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    before = run_onnxruntime(model, {"in/x:0": x})["out/y:0"]
    after = run_onnxruntime(normalized, {"in/x:0": x})["out/y:0"]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)


def test_signature_and_random_inputs_resolve_symbolic_dims(user_model):
    sig = onnx_io.io_signature(user_model())
    assert sig["inputs"] == [{"name": "in/x:0", "shape": ["N", 4], "dtype": "float32"}]
    inputs = onnx_io.random_inputs(sig["inputs"], seed=0, batch=3)
    assert inputs["in/x:0"].shape == (3, 4)


@pytest.mark.parametrize(
    "payload, message",
    [(None, "no such file"), (b"not an onnx file at all", "not a readable ONNX model"), (b"", "not an ONNX model")],
)
def test_broken_files_give_one_line_errors(tmp_path, payload, message):
    path = tmp_path / "bad.onnx"
    if payload is not None:
        path.write_bytes(payload)
    with pytest.raises(TridesignError, match=message) as info:
        onnx_io.load_onnx(path)
    assert "\n" not in str(info.value)


def test_truncated_file_is_rejected(tmp_path, resnet20_onnx):
    path = tmp_path / "cut.onnx"
    path.write_bytes(resnet20_onnx.read_bytes()[:5000])
    with pytest.raises(TridesignError):
        onnx_io.load_onnx(path)


def test_unsupported_operator_names_op_and_node(user_model):
    model = user_model(17)
    model.graph.node.append(helper.make_node("FancyOp", ["out/y:0"], ["z"], name="custom/node", domain="com.example"))
    with pytest.raises(TridesignError, match="unsupported operator 'FancyOp'.*custom/node"):
        onnx_io.check_operators(model)


def test_example_inputs_larger_than_memory_are_refused_before_allocating():
    from tridesign.compiler.onnx_io import random_inputs
    from tridesign.errors import UsageError

    signature = [{"name": "x", "shape": [1, 3, 200000, 200000], "dtype": "float32"}]
    with pytest.raises(UsageError, match="would take 447.0 GiB .*'x' 1x3x200000x200000.* --input-shape"):
        random_inputs(signature)
