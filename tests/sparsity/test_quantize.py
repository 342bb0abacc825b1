"""int8 static quantization: QDQ structure, per-channel weight scales, bounded drift, measured latency."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tridesign.compiler.export import torch_to_onnx
from tridesign.compiler.quantize import quantize_int8, saturates_int8
from tridesign.errors import UsageError
from tridesign.sparsity_plan import load_plan


def test_int8_qdq_per_channel(resnet, tmp_path) -> None:
    rng = np.random.default_rng(0)
    calib = [{"input": rng.standard_normal((4, 3, 32, 32), dtype=np.float32)} for _ in range(4)]
    model = torch_to_onnx(resnet, calib[0], ("logits",), {"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.save(model, tmp_path / "fp32.onnx")
    labels_seen = []

    def evaluate(predict):
        out = predict(calib[0])
        labels_seen.append(out.shape)
        return float((out.argmax(1) == predict(calib[0]).argmax(1)).mean())

    result = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib, evaluate=evaluate)
    q = onnx.load(tmp_path / "int8.onnx")
    onnx.checker.check_model(q)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    conv_weight_dq = [
        n for n in q.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4
    ]
    assert conv_weight_dq, "conv weights are stored int8"
    for node in conv_weight_dq:
        assert inits[node.input[0]].dtype == np.int8
        assert inits[node.input[1]].shape == (inits[node.input[0]].shape[0],)  # one scale per output channel
    assert result["size_int8_bytes"] < 0.6 * result["size_fp32_bytes"]
    assert result["max_rel_output_drift"] < 0.1
    assert result["top1_agreement"] >= 0.75
    assert result["int8_slower"] == (result["latency_int8_ms"] > result["latency_fp32_ms"])
    assert result["accuracy_delta"] == result["accuracy_int8"] - result["accuracy_fp32"]
    assert labels_seen and not list(tmp_path.glob(".*work"))
    # the weight range follows this CPU: 7 bits where its int8 kernels would saturate on 8
    assert result["weights_reduced_range"] == saturates_int8()
    assert int(np.abs(inits[conv_weight_dq[0].input[0]]).max()) <= (64 if saturates_int8() else 127)


@pytest.mark.parametrize(
    "machine,flags,saturates",
    [("x86_64", {"avx2", "fma"}, True), ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, False),
     ("x86_64", {"avx2", "avx_vnni"}, False), ("aarch64", {"asimd"}, False)],
)
def test_weights_are_reduced_where_int8_kernels_saturate(monkeypatch, machine, flags, saturates) -> None:
    import platform

    import tridesign.targets as targets

    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(targets, "host_cpu_flags", lambda: flags)
    assert saturates_int8() == saturates


def test_needs_calibration(tmp_path) -> None:
    with pytest.raises(UsageError):
        quantize_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", [])


def test_int8_keeps_sparsity_annotations(resnet, example, tmp_path) -> None:
    from tridesign.annotations import read_weight_sparsity
    from tridesign.compiler.sparsity import annotate_exported, prune_torch
    from tridesign.compiler.sparsity.inspect import layer_rows

    report = prune_torch(resnet, load_plan("nm:2:4"), example)
    model = torch_to_onnx(resnet, example, ("logits",))
    annotate_exported(model, report)
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", [example])
    q = onnx.load(tmp_path / "int8.onnx")
    records = read_weight_sparsity(q)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    quantized = [n for n in records if inits.get(n) is not None and inits[n].dtype == np.int8]
    assert len(quantized) >= 20  # the conv weights, now int8, carry their records
    for name in quantized:
        mask = records[name].decoded_mask()
        assert not inits[name][~mask].any()  # symmetric int8 keeps the zeros
    rows = layer_rows(q)
    assert len(rows) == 22 and all(r["pattern"] == "nm:2:4" for r in rows if r["op"] == "Conv")


def test_int8_verification_is_against_the_integer_kernels_within_one_step(resnet, tmp_path) -> None:
    from tridesign.verification import VERIFY_ATOL, VERIFY_RTOL, output_steps, run_onnxruntime, verify

    rng = np.random.default_rng(1)
    calib = [{"input": rng.standard_normal((2, 3, 32, 32), dtype=np.float32)} for _ in range(2)]
    onnx.save(torch_to_onnx(resnet, calib[0], ("logits",), {"input": {0: "batch"}, "logits": {0: "batch"}}), tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib)
    q = onnx.load(tmp_path / "int8.onnx")
    steps = output_steps(q)
    producer = {o: n for n in q.graph.node for o in n.output}["logits"]
    scale = numpy_helper.to_array({i.name: i for i in q.graph.initializer}[producer.input[1]])
    assert producer.op_type == "DequantizeLinear" and steps == {"logits": pytest.approx(float(np.max(scale)))}
    reference = run_onnxruntime(q, calib[0], int8_kernels=True)
    fp_rule = VERIFY_ATOL + VERIFY_RTOL * float(np.abs(reference["logits"]).max())
    near = verify({"logits": reference["logits"] + 0.9 * steps["logits"]}, reference, steps)
    far = verify({"logits": reference["logits"] + 1.01 * steps["logits"] + fp_rule}, reference, steps)
    assert near.passed and not far.passed and "quantization step" in near.rule and "int8 kernels" in near.reference
    # the fp32 rule alone would refuse one step; a float graph keeps it (and its reference)
    assert not verify({"logits": reference["logits"] + 0.9 * steps["logits"]}, reference).passed
    assert "optimizations disabled" in verify(reference, reference).reference
    assert output_steps(onnx.load(tmp_path / "fp32.onnx")) == {}
