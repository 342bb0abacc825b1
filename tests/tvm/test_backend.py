"""TvmBackend on the host: numbers vs ONNX Runtime, a fresh-process load, odd names, bad ops, layers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tridesign.compiler.backends.tvm import kernel_op_type
from tridesign.compiler.options import CompileOptions
from tridesign.errors import TridesignError

# fp32 kernels with a different summation order than ORT's; ResNet-20 tiny logits are O(1).
ATOL = 1e-4
RTOL = 1e-4


def ort_run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def test_resnet20_matches_onnx_runtime(tvm_backend, tvm_resnet20, resnet20_onnx):
    out, result = tvm_resnet20
    assert (out / "module.so").is_file() and "module.so" in result.files
    assert result.tuned is False and any("untuned" in n for n in result.notes)
    # every conv (with its residual add and ReLU) on the hand-written kernel, default tiles; the
    # pooling and classifier left to MetaSchedule, untuned
    assert result.tuning["dense_convs"] == 21 and result.tuning["dense_conv_tiles_defaulted"] == 21
    assert result.tuning["winograd_convs"] == 0  # 16–64 channels on 32…8 maps: the direct kernel pays more
    assert result.tuning["kernels"] == 2 and result.tuning["kernels_tuned"] == 0
    session = tvm_backend.load(out)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = session.run({session.input_names[0]: x})
    want = ort_run(resnet20_onnx, {session.input_names[0]: x})
    assert list(got) == list(want) == session.output_names
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=ATOL, rtol=RTOL)


def test_runs_do_not_share_inputs_or_outputs(tvm_backend, tvm_resnet20, resnet20_onnx):
    """CPU inputs go through one staging buffer per input and outputs are read through DLPack:
    a later run must not change an earlier result, and a float64 input is cast like before."""
    out, _ = tvm_resnet20
    session = tvm_backend.load(out)
    name = session.input_names[0]
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((1, 3, 32, 32)) for _ in range(2))
    first = session.run({name: a})
    kept = {k: v.copy() for k, v in first.items()}
    second = session.run({name: b.astype(np.float32)})
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])
        np.testing.assert_allclose(first[k], ort_run(resnet20_onnx, {name: a.astype(np.float32)})[k], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(second[k], ort_run(resnet20_onnx, {name: b.astype(np.float32)})[k], atol=ATOL, rtol=RTOL)
        assert not np.allclose(first[k], second[k])


def test_module_loads_in_a_fresh_process(tvm_resnet20):
    out, _ = tvm_resnet20
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from pathlib import Path
        from tridesign.compiler.backends.tvm import TvmBackend
        s = TvmBackend().load(Path({str(out)!r}))
        x = np.ones((1, 3, 32, 32), np.float32)
        print(json.dumps({{k: v.tolist() for k, v in s.run({{s.input_names[0]: x}}).items()}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    logits = np.array(json.loads(proc.stdout.strip().splitlines()[-1])["logits"])
    assert logits.shape == (1, 10) and np.isfinite(logits).all()


def test_names_with_slash_and_colon_and_tuple_outputs(tvm_backend, tmp_path, empty_db, odd_model):
    path = tmp_path / "odd.onnx"
    onnx.save(odd_model, path)
    out = tmp_path / "art"
    out.mkdir()
    result = tvm_backend.compile(path, out, CompileOptions(backend="tvm", batch=2, tuning_db=empty_db))
    assert any("batch axis fixed to 2" in n for n in result.notes)
    session = tvm_backend.load(out)
    assert session.input_names == ["in/x:0"] and session.output_names == ["out/relu:0", "out/sig:1"]
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    got = session.run({"in/x:0": x})
    want = ort_run(path, {"in/x:0": x})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=1e-5)


def test_unsupported_operator_names_op_and_node(tvm_backend, tmp_path, empty_db):
    nodes = [helper.make_node("Det", ["m/in:0"], ["m/det:0"], name="linalg/det:0")]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("m/in:0", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("m/det:0", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(TridesignError, match=r"operator Det \(node 'linalg/det:0'\)"):
        tvm_backend.compile(path, tmp_path, CompileOptions(backend="tvm", tuning_db=empty_db))


def test_missing_input_is_a_one_line_error(tvm_backend, tvm_resnet20):
    session = tvm_backend.load(tvm_resnet20[0])
    with pytest.raises(TridesignError, match="missing inputs"):
        session.run({})


def test_profile_layers_times_every_conv_call_site(tvm_backend, tvm_resnet20):
    out, result = tvm_resnet20
    x = np.zeros((1, 3, 32, 32), np.float32)
    layers = tvm_backend.profile_layers(out, {"input": x}, repeat=3)
    # ResNet-20 has 19 3x3 convolutions (+2 strided 1x1 shortcuts), each with its residual add/relu.
    convs = [layer for layer in layers if layer.op_type.startswith("conv2d")]
    assert len(convs) >= 19
    assert all(layer.ms > 0 for layer in layers)
    assert [layer.ms for layer in layers] == sorted((layer.ms for layer in layers), reverse=True)
    assert not any(layer.name.startswith("vm.builtin") for layer in layers)


def test_kernel_op_type_strips_counters():
    assert kernel_op_type("fused_conv2d3_add2_add3_relu1") == "conv2d+add+add+relu"
    assert kernel_op_type("dense_conv2d_1x16x32x32_16x3x3_s11p11d11_t4x32_res_relu1") == "conv2d+add+relu"
    assert kernel_op_type("dense_conv2d_1x16x32x32_32x1x1_s22p00d11_t8x161") == "conv2d"
    assert kernel_op_type("winograd_conv2d_1x64x56x56_64_t16x16_res_relu") == "conv2d+add+relu"
    assert kernel_op_type("fused_matmul_add6") == "matmul+add"
    assert kernel_op_type("reshape3") == "reshape"
