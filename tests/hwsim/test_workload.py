import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.hwsim.conftest import conv_model, graph_model, tiny_cnn, weight
from tridesign.annotations import DataSparsity, WeightSparsity, encode_mask, write_data_sparsity, write_weight_sparsity
from tridesign.errors import TridesignError
from tridesign.hwsim.workload import load_workload


def only(model):
    layers = load_workload(model).layers
    assert len(layers) == 1
    return layers[0]


@pytest.mark.parametrize("stride,pad,dilation,expected_hw", [
    (1, 1, 1, (10, 12)), (2, 1, 1, (5, 6)), (2, 0, 1, (4, 5)), (1, 2, 2, (10, 12)), (3, 0, 2, (2, 3)),
])
def test_conv_geometry(stride, pad, dilation, expected_hw):
    layer = only(conv_model(stride=stride, pad=pad, dilation=dilation))
    oh, ow = expected_hw
    assert (layer.M, layer.K, layer.N, layer.groups) == (oh * ow, 8 * 9, 16, 1)
    assert layer.macs == oh * ow * 16 * 8 * 9
    assert layer.ofmap_elems == 16 * oh * ow and layer.filter_elems == 16 * 8 * 9


def test_scalesim_m_uses_prepadded_ceil():
    # SCALE-Sim's ofmap side is ceil((in - k + s) / s); the true one is floor((in - k) / s) + 1.
    layer = only(conv_model(stride=2, pad=0))  # 10x12, k3, s2
    assert layer.M == 4 * 5
    assert layer.scalesim_M == 5 * 6
    layer = only(conv_model(hw=(9, 9), stride=2, pad=0, k=2))
    assert (layer.M, layer.scalesim_M) == (16, 25)
    layer = only(conv_model(hw=(9, 9), stride=3, pad=0, k=3))  # divides exactly: both agree
    assert (layer.M, layer.scalesim_M) == (9, 9)


def test_grouped_and_depthwise():
    layer = only(conv_model(cin=8, cout=16, group=4))
    assert (layer.groups, layer.K, layer.N) == (4, 2 * 9, 4)
    dw = only(conv_model(cin=8, cout=8, group=8))
    assert (dw.groups, dw.K, dw.N) == (8, 9, 1)
    assert dw.macs == 10 * 12 * 8 * 9


def test_gemm_transb_and_batched_attention_matmul():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 20])
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 4, 7, 16])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 4, 16, 7])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "s", "z")]
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1),
        helper.make_node("MatMul", ["q", "k"], ["s"], name="qk"),
        helper.make_node("MatMul", ["x", "w2"], ["z"], name="proj"),
    ]
    model = graph_model(nodes, [x, q, k], outs, [weight("w", (30, 20)), weight("w2", (20, 5))])
    fc, qk, proj = load_workload(model).layers
    assert (fc.M, fc.K, fc.N, fc.groups) == (6, 20, 30, 1)
    assert (qk.M, qk.K, qk.N, qk.groups) == (7, 16, 7, 8)  # batch x heads independent GEMMs
    assert qk.weight_pattern == "dense"  # computed at run time, no stored weight
    assert (proj.M, proj.K, proj.N) == (6, 20, 5)


def test_vector_ops_and_free_ops():
    wl = load_workload(tiny_cnn())
    kinds = [(l.name, l.kind) for l in wl.layers]
    assert ("flatten", "vector") not in kinds and all(n != "flatten" for n, _ in kinds)
    relu = next(l for l in wl.layers if l.name == "relu1")
    pool = next(l for l in wl.layers if l.name == "pool1")
    gap = next(l for l in wl.layers if l.name == "gap")
    assert relu.vector_ops == 16 * 16 * 16
    assert pool.vector_ops == 16 * 8 * 8 * 4
    assert gap.vector_ops == 32 * 8 * 8
    fc = next(l for l in wl.layers if l.name == "fc")
    assert fc.inputs[0][0] == "g"  # the Flatten is looked through to its producer


def test_weight_zeros_and_annotations_are_read():
    model = tiny_cnn(density=0.3)
    wl = load_workload(model)
    conv2 = next(l for l in wl.layers if l.name == "conv2")
    assert 0.2 < conv2.weight_density < 0.4 and conv2.weight_mask.shape == (32, 16 * 9)
    mask = np.zeros((32, 16, 3, 3), dtype=bool)
    mask[:, :, 0, :2] = True  # an annotated pattern overrides the stored zeros
    write_weight_sparsity(model, {"w2": WeightSparsity(method="nm", pattern="nm:2:9", density=2 / 9,
                                                       shape=(32, 16, 3, 3), mask=encode_mask(mask))})
    write_data_sparsity(model, DataSparsity(tile_px=60, active_tile_fraction=0.8, frame_keep_fraction=0.6))
    wl = load_workload(model)
    conv2 = next(l for l in wl.layers if l.name == "conv2")
    assert conv2.weight_pattern == "nm:2:9"
    assert conv2.weight_density == pytest.approx(2 / 9)
    assert (conv2.weight_mask.sum(axis=1) == 16 * 2).all()
    assert wl.data_sparsity.active_tile_fraction == 0.8


def test_unknown_shapes_raise_tridesign_error():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = graph_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], [])
    with pytest.raises(TridesignError):
        load_workload(model)


def test_int8_qdq_weight_density_comes_from_the_stored_int8_tensor():
    """An int8 graph feeds Conv through DequantizeLinear; its zeros are in the int8 initializer."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(8, 4, 3, 3)).astype(np.int8)
    q[rng.random(q.shape) < 0.7] = 0
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w_dq"], axis=0, name="w_dq"),
             helper.make_node("Conv", ["x", "w_dq"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(np.full(8, 0.01, np.float32), "w_scale")])
    layer = load_workload(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).layers[0]
    assert layer.op_type == "Conv" and layer.weight_density == pytest.approx(float((q != 0).mean()), abs=1e-12)
    assert layer.weight_density < 0.4 and layer.weight_pattern == "unstructured"


def test_int8_layer_moves_half_the_bytes_and_takes_the_8bit_mac():
    """The same conv as float and as QDQ int8, simulated on a 16-bit device: 8-bit words, int8 MAC energy."""
    from onnx import numpy_helper

    from tridesign.hwsim.energy import load_table
    from tridesign.hwsim.simulate import simulate
    from tridesign.hwsim.spec import load_spec

    w = np.random.default_rng(1).integers(-127, 128, size=(16, 8, 3, 3)).astype(np.int8)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])
    conv = dict(pads=[1, 1, 1, 1], name="conv")
    fp = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], **conv)], "fp", [x], [y],
                           [numpy_helper.from_array(w.astype(np.float32) * 0.01, "w")])
    q = helper.make_graph([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_q"], name="xq"),
        helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x_dq"], name="xdq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w_dq"], axis=0, name="wdq"),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], **conv),
    ], "q", [x], [y], [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.full(16, 0.01, np.float32), "w_s"),
                       numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")])
    opset = [helper.make_opsetid("", 17)]
    system = load_spec("eyeriss-like").with_device_overrides({"word_bits": 16, "energy_table": "horowitz45"})
    layers = [load_workload(helper.make_model(g, opset_imports=opset)).layers[0] for g in (fp, q)]
    assert [layer.word_bits for layer in layers] == [None, 8]
    runs = [simulate(load_workload(helper.make_model(g, opset_imports=opset)), system).layers[0] for g in (fp, q)]
    assert runs[1].traffic.dram_bytes == pytest.approx(runs[0].traffic.dram_bytes / 2, rel=1e-12)
    table = load_table("horowitz45")
    assert runs[0].energy_pj["mac"] == pytest.approx(runs[0].issued_macs * table.mac_pj)
    assert runs[1].energy_pj["mac"] == pytest.approx(runs[1].issued_macs * table.mac8_pj)
