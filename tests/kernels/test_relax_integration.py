"""End to end: a pruned ONNX model → Relax with sparse kernels → same outputs as ORT on the masked model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.annotations import WeightSparsity, encode_mask, write_weight_sparsity
from tridesign.targets import tvm_target
from tridesign.kernels.relax_integration import SparsePolicy, sparsify_module

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402


def _block_prune(rng: np.random.Generator, w: np.ndarray, block: tuple[int, int], sparsity: float) -> np.ndarray:
    """Zero whole (block) tiles of the 2-D view [out, rest] of a weight."""
    flat = w.reshape(w.shape[0], -1)
    keep = rng.random((-(-flat.shape[0] // block[0]), -(-flat.shape[1] // block[1]))) >= sparsity
    mask = np.repeat(np.repeat(keep, block[0], 0), block[1], 1)[: flat.shape[0], : flat.shape[1]]
    return (flat * mask).reshape(w.shape).astype(np.float32)


def _pruned_model() -> tuple[onnx.ModelProto, dict[str, str]]:
    """conv3x3 → relu → grouped strided conv → relu → 1×1 conv → flatten → Gemm(transB) → MatMul."""
    rng = np.random.default_rng(0)
    w = {
        "c1": rng.standard_normal((16, 3, 3, 3)),
        "c2": rng.standard_normal((16, 8, 3, 3)),
        "c3": rng.standard_normal((8, 16, 1, 1)),
        "fc": rng.standard_normal((20, 8 * 4 * 4)),  # Gemm transB=1: [out, in]
        "mm": rng.standard_normal((20, 10)),  # MatMul: [in, out]
    }
    w = {k: (v * 0.2).astype(np.float32) for k, v in w.items()}
    pruned = {
        "c1": _block_prune(rng, w["c1"], (1, 1), 0.7),
        "c2": _block_prune(rng, w["c2"], (1, 1), 0.9),
        "c3": w["c3"],  # annotated but dense: must stay dense
        "fc": _block_prune(rng, w["fc"], (4, 4), 0.9),
        "mm": _block_prune(rng, w["mm"].T, (2, 1), 0.8).T.copy(),  # 1×2 blocks on the stored [in, out]
    }
    nodes = [
        helper.make_node("Conv", ["x", "c1", "b1"], ["a1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2"], ["a2"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("Conv", ["r2", "c3"], ["a3"]),
        helper.make_node("Flatten", ["a3"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "bfc"], ["g"], transB=1),
        helper.make_node("MatMul", ["g", "mm"], ["y"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in pruned.items()]
    inits += [numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "b1"),
              numpy_helper.from_array(np.linspace(0, 1, 20, dtype=np.float32), "bfc")]
    graph = helper.make_graph(nodes, "pruned", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    patterns = {"c1": "unstructured", "c2": "unstructured", "c3": "unstructured", "fc": "block:4x4", "mm": "block:0.8:1x2"}
    write_weight_sparsity(model, {
        k: WeightSparsity(method="test", pattern=patterns[k], density=float((v != 0).mean()), shape=v.shape,
                          mask=encode_mask(v != 0))
        for k, v in pruned.items()
    })
    return model, patterns


def test_rewritten_module_matches_ort_on_the_masked_model(tmp_path) -> None:
    model, _ = _pruned_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    mod = from_onnx(model, keep_params_in_input=False)
    rewritten, report = sparsify_module(mod, model, SparsePolicy(max_density=0.4, max_density_narrow=0.4))
    by_weight = {d.weight: d for d in report}
    assert {k for k, d in by_weight.items() if d.sparse} == {"c1", "c2", "fc", "mm"}
    assert not by_weight["c3"].sparse and "crossover" in by_weight["c3"].reason
    assert by_weight["fc"].kernel.startswith("bsr_matmul") and by_weight["fc"].kernel.endswith("b4x4")
    assert by_weight["mm"].kernel.endswith("b2x1")  # transposed to the kernel's [out, in] view
    assert by_weight["c2"].kernel.startswith("sparse_conv2d") and "g2" in by_weight["c2"].kernel
    text = rewritten.script()
    assert text.count("R.call_tir") == 4 and text.count("R.nn.conv2d") == 1

    # Through an exported library, as the TVM backend ships it: packed weights travel as constants.
    tvm.compile(rewritten, target=tvm_target("host")).export_library(str(tmp_path / "model.so"))
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "model.so")), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_policy_keeps_everything_dense_when_the_crossover_is_never_reached() -> None:
    model, _ = _pruned_model()
    mod = from_onnx(model, keep_params_in_input=False)
    rewritten, report = sparsify_module(mod, model, SparsePolicy(max_density=0.01))
    assert len(report) == 5 and not any(d.sparse for d in report)
    assert "R.call_tir" not in rewritten.script()


def test_untuned_module_policy_rewrites_every_annotated_layer_but_dense_ungrouped_convs() -> None:
    """Untuned, matmuls and the grouped conv compete with TVM's naive default schedules (every
    density goes sparse); an ungrouped conv competes with the register-tiled dense kernel, so the
    measured crossover holds for it: the annotated-but-dense 1×1 conv stays dense."""
    model, _ = _pruned_model()
    rewritten, report = sparsify_module(from_onnx(model, keep_params_in_input=False), model,
                                        SparsePolicy.for_untuned_module())
    assert len(report) == 5 and [d.weight for d in report if not d.sparse] == ["c3"]
    assert rewritten.script().count("R.nn.conv2d") == 1 and rewritten.script().count("R.call_tir") == 4


def test_default_policy_keeps_a_moderately_sparse_narrow_matmul_dense() -> None:
    model, _ = _pruned_model()
    _, report = sparsify_module(from_onnx(model, keep_params_in_input=False), model)
    mm = next(d for d in report if d.weight == "mm")
    assert mm.density > 0.1 and not mm.sparse and "narrow matmul (N=2" in mm.reason
    assert next(d for d in report if d.weight == "c2").sparse  # convs are not subject to the narrow rule


def test_weights_without_a_record_are_reported_dense() -> None:
    model, _ = _pruned_model()
    mod = from_onnx(model, keep_params_in_input=False)
    _, report = sparsify_module(mod, model, records={})
    assert len(report) == 5
    assert all(not d.sparse and d.reason == "no sparsity record for this weight" for d in report)


def _nm_pruned_model() -> onnx.ModelProto:
    """conv3x3 → relu → flatten → Gemm(transB) → MatMul, pruned nm:2:4 by the compiler's ONNX pass."""
    from tridesign.compiler.sparsity import prune_onnx
    from tridesign.sparsity_plan import load_plan

    rng = np.random.default_rng(3)
    w = {"conv": (8, 8, 3, 3), "fc": (12, 8 * 4 * 4), "mm": (12, 8)}  # Gemm [out, in], MatMul [in, out]
    nodes = [
        helper.make_node("Conv", ["x", "conv"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["g"], transB=1),
        helper.make_node("MatMul", ["g", "mm"], ["y"]),
    ]
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32), k) for k, s in w.items()]
    graph = helper.make_graph(nodes, "nm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    prune_onnx(model, load_plan("nm:2:4"))
    return model


def test_compiler_nm_masks_run_on_the_nm_and_csr_kernels() -> None:
    """N:M pruning groups a conv's input channels per kernel position (TensorRT's layout) and a
    matmul's input features: the N:M kernel packs the Gemm and MatMul weights, the CSR conv takes the
    conv's mask, and the module still computes what ORT computes on the pruned model."""
    model = _nm_pruned_model()
    x = np.random.default_rng(4).standard_normal((2, 8, 4, 4)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    rewritten, report = sparsify_module(from_onnx(model, keep_params_in_input=False), model,
                                        SparsePolicy(max_density=0.5, max_density_narrow=0.5))
    kernels = {d.weight: d.kernel for d in report}
    assert kernels["fc"].startswith("nm_matmul") and kernels["mm"].startswith("nm_matmul")
    assert kernels["conv"].startswith("sparse_conv2d")
    vm = relax.VirtualMachine(tvm.compile(rewritten, target=tvm_target("host")), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
