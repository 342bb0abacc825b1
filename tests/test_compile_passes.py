"""compile --prune / --finetune-steps / --quantize: the passes reach the artifact and its manifest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tridesign.annotations import read_weight_sparsity
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.errors import UsageError
from tridesign.sparsity_plan import load_plan


def test_registered_model_pruned_in_torch_is_annotated_and_verified(tmp_path):
    manifest = compile_artifact("resnet20", CompileOptions(prune=load_plan("unstructured:0.8")), tmp_path / "a")
    assert manifest.options["prune"] == "unstructured:0.8"  # the parsed plan is recorded as its text
    assert manifest.source.sparsity["real_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert manifest.verification.passed
    model = onnx.load(str(tmp_path / "a" / "model.onnx"))
    records = read_weight_sparsity(model)
    assert records, "the exported graph carries the sparsity records"
    assert manifest.weight_sparsity == records
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name, record in records.items():
        weight = inits[name]
        mask = record.decoded_mask()
        assert mask is not None and mask.shape == weight.shape
        assert np.all(weight[~mask] == 0), f"{name}: pruned positions must be zero after BN folding"


def test_user_onnx_pruned_nm_and_quantized(tmp_path, resnet20_onnx):
    manifest = compile_artifact(str(resnet20_onnx), CompileOptions(prune=load_plan("nm:2:4"), quantize="int8"), tmp_path / "q")
    assert manifest.source.sparsity["real_sparsity"] == pytest.approx(0.5, abs=0.01)
    quant = manifest.quantization
    assert quant["format"] == "QDQ" and quant["size_int8_bytes"] < quant["size_fp32_bytes"]
    assert (tmp_path / "q" / "model.fp32.onnx").is_file()
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert manifest.verification.passed
    assert quant["int8_slower"] == any("int8 is slower" in n for n in manifest.notes)


@pytest.mark.parametrize(
    "options, message",
    [
        (CompileOptions(quantize="int4"), "unknown --quantize"),
        (CompileOptions(finetune_steps=3), "give --prune too"),
    ],
)
def test_bad_pass_options_fail_before_work(tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        compile_artifact("resnet20", options, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_prune_spec_fails_before_work(cli, tmp_path):
    """--prune is parsed once, when the CLI builds the options: a bad SPEC never reaches the pipeline."""
    res = cli("compile", "resnet20", "-o", str(tmp_path / "x"), "--prune", "sideways:0.5")
    assert res.returncode == 2 and "unknown prune method" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_pruned_layers_run_on_sparse_tvm_kernels(tmp_path):
    manifest = compile_artifact("resnet20", CompileOptions(backend="tvm", prune=load_plan("block:0.9:4x4")), tmp_path / "s")
    layers = manifest.sparse_layers
    # Untuned module: the policy puts every annotated layer on sparse kernels (measured 15-2700x over
    # untuned dense TIR in benchmarks/sparse_kernels.py); the decisions must say so.
    assert layers and all(d["sparse"] for d in layers)
    assert set(manifest.weight_sparsity) == {d["weight"] for d in layers}
    assert manifest.verification.passed


def test_cross_target_is_built_but_not_verified_here(tmp_path):
    manifest = compile_artifact("resnet20", CompileOptions(backend="tvm", target="raspberry-pi-5"), tmp_path / "rpi")
    assert manifest.verification.passed is None
    assert any("--remote" in note for note in manifest.notes)
    assert manifest.target.name == "raspberry-pi-5"
