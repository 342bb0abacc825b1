"""The register-tiled dense conv: against torch's conv2d, inside Relax modules, and its tile book."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from tridesign.compiler.backends.tvm import finish, import_onnx, lower_fused
from tridesign.compiler.targets import get_target
from tridesign.kernels.build import host_target
from tridesign.kernels.conv_tiles import BOOK_FILE, ConvLayer, TileBook, candidates, default_tile
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.relax_dense_conv import dense_conv_module
from tridesign.kernels.tir_dense_conv import ConvTile, dense_conv2d_consts, dense_conv2d_func

# (x shape, w shape, stride, padding, dilation, tile, relu, residual): ResNet stems and blocks,
# strided shortcuts, rows that are not a multiple of the tile, dilation, a batch of two.
CASES = [
    ((1, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, ConvTile(4, 32), True, False),
    ((1, 16, 32, 32), (32, 16, 3, 3), 2, 1, 1, ConvTile(8, 16), True, True),
    ((2, 16, 15, 15), (32, 16, 1, 1), 2, 0, 1, ConvTile(8, 16), False, False),
    ((1, 3, 37, 37), (16, 3, 7, 7), 2, 3, 1, ConvTile(4, 16), True, False),
    ((1, 8, 7, 7), (32, 8, 3, 3), 1, 1, 1, ConvTile(16, 8), False, True),
    ((1, 4, 20, 20), (8, 4, 3, 3), 1, 2, 2, ConvTile(2, 32), True, False),
]


def run_kernel(x, w, b, res, geom, tile, relu):
    kf = dense_conv2d_func(x.shape, w.shape, geom, tile, relu, res is not None)
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=host_target())
    dev = tvm.cpu()
    placeholder = np.zeros(1, np.float32) if res is None else res
    args = [tvm.runtime.tensor(a, dev) for a in (x, placeholder, *dense_conv2d_consts(w, b, tile))]
    args.append(tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32), dev))
    lib[kf.name](*args)
    return args[-1].numpy()


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,dil,tile,relu,residual", CASES)
def test_kernel_matches_torch(x_shape, w_shape, stride, pad, dil, tile, relu, residual):
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.1).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=pad, dilation=dil).numpy()
    res = rng.standard_normal(want.shape).astype(np.float32) if residual else None
    if res is not None:
        want = want + res
    if relu:
        want = np.maximum(want, 0)
    got = run_kernel(x, w, b, res, ConvGeometry((stride, stride), (pad, pad), (dil, dil)), tile, relu)
    # fp32 sums of up to 7*7*16 terms in another order than torch's: 1e-5 relative to |y| ~ 1
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_tiles_that_do_not_divide_the_channels_are_refused():
    with pytest.raises(ValueError, match="not a multiple"):
        dense_conv2d_func((1, 4, 8, 8), (12, 4, 3, 3), ConvGeometry((1, 1), (1, 1)), ConvTile(8, 8), False, False)
    layer = ConvLayer((1, 4, 8, 8), (12, 4, 3, 3), ConvGeometry((1, 1), (1, 1)), False, False)
    assert all(t.fits(12) and t.columns <= 16 for t in candidates(layer))
    assert default_tile(layer, host_target()).fits(12)


def block_model() -> onnx.ModelProto:
    """Conv+bias+ReLU, a residual block with a strided 1x1 shortcut, a conv read twice, a grouped conv."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    inits = [init("w1", 16, 8, 3, 3), init("b1", 16), init("w2", 32, 16, 3, 3), init("w3", 32, 32, 3, 3),
             init("ws", 32, 16, 1, 1), init("w4", 32, 32, 3, 3), init("wg", 32, 8, 3, 3)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["r1", "ws"], ["s"], strides=[2, 2]),
        helper.make_node("Add", ["c3", "s"], ["a"]),
        helper.make_node("Relu", ["a"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"], pads=[1, 1, 1, 1]),  # read twice: no epilogue
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("Add", ["c4", "r4"], ["a2"]),
        helper.make_node("Conv", ["a2", "wg"], ["y"], pads=[1, 1, 1, 1], group=4),  # grouped: MetaSchedule's
    ]
    graph = helper.make_graph(
        nodes, "blocks",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_relax_rewrite_absorbs_bias_residual_relu_and_matches_onnx_runtime():
    model = block_model()
    spec = get_target("host")
    target = spec.tvm_target()
    mod, _ = import_onnx(model, batch=1)
    mod, layers = dense_conv_module(mod, TileBook(None), target)
    epilogues = sorted((layer.w_shape[0], layer.w_shape[2], layer.relu, layer.residual) for layer, _ in layers)
    assert epilogues == [(16, 3, True, False), (32, 1, False, False), (32, 3, False, False), (32, 3, True, False), (32, 3, True, True)]
    fused = lower_fused(mod, target)
    left = [gv.name_hint for gv, f in fused.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and not gv.name_hint.startswith("dense_conv2d")]
    assert any("conv2d" in name for name in left)  # the grouped conv, left to MetaSchedule
    vm = relax.VirtualMachine(tvm.compile(finish(fused, target), target), tvm.cpu())
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_tile_book_measures_saves_and_is_used(tmp_path):
    layer = ConvLayer((1, 8, 8, 8), (16, 8, 3, 3), ConvGeometry((1, 1), (1, 1)), True, False)
    book = TileBook.load(tmp_path)
    assert book.measure_missing([layer, layer], host_target()) == 1
    book.save()
    saved = json.loads((tmp_path / BOOK_FILE).read_text())[layer.key()]
    assert set(saved["ms"]) == {f"{t.channels}x{t.columns}" for t in candidates(layer)}
    assert all(ms > 0 for ms in saved["ms"].values())
    assert saved["ms"][f"{saved['tile'][0]}x{saved['tile'][1]}"] == min(saved["ms"].values())
    again = TileBook.load(tmp_path)
    assert again.tile_for(layer, host_target()) == ConvTile(*saved["tile"]) and again.defaulted == 0
    assert again.measure_missing([layer], host_target()) == 0
