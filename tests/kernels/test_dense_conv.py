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

from tridesign.compiler.tvm.frontend import finish, lower_fused
from tridesign.deploy.tvm_runtime import import_onnx
from tridesign.targets import get_target
from tridesign.targets import tvm_target
from tridesign.kernels.conv_tiles import (
    BOOK_FILE,
    ConvLayer,
    TileBook,
    candidates,
    conv_consts,
    conv_kernel,
    accumulator_budget,
    default_tile,
    vector_floats,
    vector_registers,
)
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.relax_dense_conv import conv_layers, dense_conv_module
from tridesign.kernels.tir_dense_conv import ConvTile, dense_conv2d_consts, dense_conv2d_func
from tridesign.kernels.tir_padding import PhaseSplit

# (x shape, w shape, stride, padding, dilation, tile, relu, residual): ResNet stems and blocks,
# strided shortcuts, rows that are not a multiple of the tile, dilation, a batch of two, channel
# counts the tile does not divide (a smaller last group), tiles of several output rows, tiles with
# the vectors across channels (pixel counts they do not divide: the last run is partial).
CASES = [
    ((1, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, ConvTile(4, 32), True, False),
    ((1, 16, 32, 32), (32, 16, 3, 3), 2, 1, 1, ConvTile(8, 16), True, True),
    ((2, 16, 15, 15), (32, 16, 1, 1), 2, 0, 1, ConvTile(8, 16), False, False),
    ((1, 3, 37, 37), (16, 3, 7, 7), 2, 3, 1, ConvTile(4, 16), True, False),
    ((1, 8, 7, 7), (32, 8, 3, 3), 1, 1, 1, ConvTile(16, 8), False, True),
    ((1, 4, 20, 20), (8, 4, 3, 3), 1, 2, 2, ConvTile(2, 32), True, False),
    ((1, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, ConvTile(6, 16), True, True),
    ((1, 64, 8, 8), (64, 64, 3, 3), 1, 1, 1, ConvTile(6, 8, rows=2), True, True),
    ((1, 32, 16, 16), (64, 32, 3, 3), 2, 1, 1, ConvTile(6, 8, rows=2), True, False),
    ((2, 5, 9, 9), (7, 5, 3, 3), 1, 1, 1, ConvTile(3, 8, rows=3), False, True),
    ((1, 64, 7, 7), (48, 64, 3, 3), 1, 1, 1, ConvTile(16, 6, across_channels=True), True, True),
    ((2, 8, 15, 15), (20, 8, 3, 3), 2, 1, 1, ConvTile(16, 5, across_channels=True), False, False),
    ((1, 16, 14, 14), (32, 16, 1, 1), 2, 0, 1, ConvTile(8, 3, across_channels=True), True, False),
]


def run_kernel(x, w, b, res, geom, tile, relu, cores=3):
    # three cores: layers that split channels give each core a share of the blocks, uneven here
    kf = dense_conv2d_func(x.shape, w.shape, geom, tile, relu, res is not None, cores)
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=tvm_target("host"))
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


def test_tiles_that_do_not_fit_are_refused_and_not_proposed():
    geom = ConvGeometry((1, 1), (1, 1))
    with pytest.raises(ValueError, match="does not fit"):  # 8 output rows in blocks of 3
        dense_conv2d_func((1, 4, 8, 8), (12, 4, 3, 3), geom, ConvTile(4, 8, rows=3), False, False)
    with pytest.raises(ValueError, match="not a multiple"):  # Winograd's groups must divide the channels
        conv_kernel(ConvLayer((1, 4, 8, 8), (12, 4, 3, 3), geom, False, False), ConvTile(8, 8, True), None)
    target = tvm_target("host")
    layer = ConvLayer((1, 4, 8, 8), (12, 4, 3, 3), geom, False, False)
    floats, budget = vector_floats(target), accumulator_budget(target)
    tiles = candidates(layer, target)
    assert tiles and all(t.fits(12, 8) and t.columns <= 16 and t.registers(floats) <= budget for t in tiles)
    assert default_tile(layer, target).fits(12, 8)


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
    planned = conv_layers(mod)  # what `tune` measures: found without building kernels
    mod, layers = dense_conv_module(mod, TileBook(None), target)
    assert sorted(planned, key=ConvLayer.key) == sorted((layer for layer, _ in layers), key=ConvLayer.key)
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
    layer = ConvLayer((1, 64, 16, 16), (16, 64, 3, 3), ConvGeometry((1, 1), (1, 1)), True, False)
    book = TileBook.load(tmp_path)
    assert book.measure_missing([layer, layer], tvm_target("host")) == 1
    book.save()
    saved = json.loads((tmp_path / BOOK_FILE).read_text())[layer.key()]
    assert set(saved["ms"]) == {t.label for t in candidates(layer, tvm_target("host"))}
    assert all(ms > 0 for ms in saved["ms"].values())
    assert any(label.startswith("w") for label in saved["ms"])  # 64 channels, 64 tiles: Winograd measured too
    again = TileBook.load(tmp_path)
    best = again.tile_for(layer, tvm_target("host"))
    assert again.defaulted == 0
    assert [best.channels, best.columns, int(best.winograd), best.rows, int(best.across_channels)] == saved["tile"]
    assert saved["ms"][best.label] == min(saved["ms"].values())
    assert again.measure_missing([layer], tvm_target("host")) == 0


def test_tile_books_written_before_rows_and_channel_tiles_still_load(tmp_path):
    """Entries were [R, VW], then [R, VW, winograd], then [.., rows]; now [.., rows, across]."""
    geom = ConvGeometry((1, 1), (1, 1))
    layers = [ConvLayer((1, c, 8, 8), (16, c, 3, 3), geom, True, False) for c in (1, 2, 3, 4)]
    entries = [[8, 16], [8, 16, 1], [6, 8, 0, 2], [16, 6, 0, 1, 1]]
    book = {layer.key(): {"tile": tile, "ms": {}} for layer, tile in zip(layers, entries)}
    (tmp_path / BOOK_FILE).write_text(json.dumps(book))
    loaded = TileBook.load(tmp_path)
    tiles = [loaded.tile_for(layer, tvm_target("host")) for layer in layers]
    assert [t.label for t in tiles] == ["8x16", "w8x16", "6x2x8", "c16x6"] and loaded.defaulted == 0


@pytest.mark.parametrize(
    "spec,floats,registers,defaults,winograd_default",
    [
        ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v4"}, 16, 32, ("c32x4", "c32x4", "4x32"), "w16x16"),
        ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}, 8, 16, ("c16x6", "4x2x8", "4x16"), "wc16x6"),
        ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}, 4, 16, ("4x8", "4x8", "4x8"), "wc8x6"),
        ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"}, 4, 32, ("4x8", "4x8", "4x8"), "w16x4"),
    ],
)
def test_tiles_follow_the_cpus_vector_registers(spec, floats, registers, defaults, winograd_default):
    target = tvm.target.Target(spec)
    assert (vector_floats(target), vector_registers(target)) == (floats, registers)
    # output rows of 28 (not a whole number of AVX vectors), 8 (one AVX2 vector), 32 columns
    layers = [
        ConvLayer((1, 64, 56, 56), (128, 64, 3, 3), ConvGeometry((2, 2), (1, 1)), True, False),
        ConvLayer((1, 64, 8, 8), (64, 64, 3, 3), ConvGeometry((1, 1), (1, 1)), True, False),
        ConvLayer((1, 16, 32, 32), (16, 16, 3, 3), ConvGeometry((1, 1), (1, 1)), True, False),
    ]
    for layer, default in zip(layers, defaults):
        tile = default_tile(layer, target)
        # row tiles take 8 accumulator registers; channel tiles 12 where the CPU has 16, 8 where it has 32
        assert tile.label == default
        assert tile.registers(floats) == (12 if tile.across_channels and registers == 16 else 8)
        assert all(t.registers(floats) <= registers - 4 for t in candidates(layer, target))
    # Winograd's products: 12 accumulators across two vectors of channels on 16 registers, 16
    # channels × one vector of tiles on 32
    winograd = ConvLayer((1, 64, 56, 56), (64, 64, 3, 3), ConvGeometry((1, 1), (1, 1)), True, False)
    assert default_tile(winograd, target).label == winograd_default
    assert all(t.registers(floats) <= registers - 4 for t in candidates(winograd, target))


@pytest.mark.parametrize(
    "kernel_hw,stride,dilation,used",
    [((3, 3), 1, 1, (1, 1)), ((1, 1), 2, 1, (1, 1)), ((3, 3), 2, 1, (2, 2)), ((7, 7), 2, 1, (2, 2)), ((3, 3), 2, 2, (1, 1))],
)
def test_padding_copy_writes_only_the_phase_planes_a_tap_reads(kernel_hw, stride, dilation, used):
    geom = ConvGeometry((stride, stride), (1, 1), (dilation, dilation))
    split = PhaseSplit.of((1, 2, 9, 9), kernel_hw, geom)
    assert split.used == used
    taps = {(ky * dilation % stride, kx * dilation % stride) for ky in range(kernel_hw[0]) for kx in range(kernel_hw[1])}
    assert taps <= {(a, b) for a in range(used[0]) for b in range(used[1])}


# (x shape, output channels, rows, tiles, relu, residual, across channels): ResNet-18's first
# stage, a batch of two with a non-square map and spare register tiles, an epilogue without ReLU;
# products with the vectors across channels on ResNet-18's 14×14 map (49 tiles: the last run of
# 6 is partial), and on a batch of two whose tile count the run divides.
WINOGRAD_CASES = [
    ((1, 64, 56, 56), 64, 16, 16, True, True, False),
    ((2, 8, 6, 10), 16, 8, 16, False, True, False),
    ((1, 32, 16, 16), 32, 8, 32, True, False, False),
    ((1, 64, 14, 14), 32, 16, 6, True, True, True),
    ((2, 16, 12, 8), 32, 16, 4, False, False, True),
]


@pytest.mark.parametrize("x_shape,k,rows,tiles,relu,residual,across", WINOGRAD_CASES)
def test_winograd_kernel_matches_torch(x_shape, k, rows, tiles, relu, residual, across):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((k, x_shape[1], 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    res = rng.standard_normal((x_shape[0], k, *x_shape[2:])).astype(np.float32) if residual else None
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    want = (want + res if residual else want)
    want = np.maximum(want, 0) if relu else want
    layer = ConvLayer(x_shape, w.shape, ConvGeometry((1, 1), (1, 1)), relu, residual)
    tile = ConvTile(rows, tiles, True, across_channels=across)
    kf = conv_kernel(layer, tile, tvm_target("host"))
    lib = tvm.compile(tvm.IRModule({kf.name: kf.func}), target=tvm_target("host"))
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in (x, res if residual else np.zeros(1, np.float32), *conv_consts(w, b, tile))]
    args.append(tvm.runtime.tensor(np.zeros(kf.out_shape, np.float32), dev))
    lib[kf.name](*args)
    # F(2x2, 3x3) adds and subtracts up to 16 products per output: fp32 error grows with C, not more
    np.testing.assert_allclose(args[-1].numpy(), want, atol=5e-5 * np.sqrt(x_shape[1]), rtol=1e-4)


def test_winograd_is_chosen_only_where_it_pays():
    target = tvm_target("host")
    same = ConvGeometry((1, 1), (1, 1))
    big = ConvLayer((1, 64, 56, 56), (64, 64, 3, 3), same, True, False)
    assert default_tile(big, target).winograd and any(t.winograd for t in candidates(big, target))
    few_channels = ConvLayer((1, 16, 32, 32), (16, 16, 3, 3), same, True, False)
    few_tiles = ConvLayer((1, 512, 6, 6), (512, 512, 3, 3), same, True, False)
    for layer in (few_channels, few_tiles):  # neither the default nor measured: it lost inside networks
        assert not default_tile(layer, target).winograd and not any(t.winograd for t in candidates(layer, target))
    odd = ConvLayer((1, 512, 7, 7), (512, 512, 3, 3), same, True, False)
    strided = ConvLayer((1, 64, 56, 56), (128, 64, 3, 3), ConvGeometry((2, 2), (1, 1)), True, False)
    for layer in (odd, strided):
        assert not layer.winograd and not any(t.winograd for t in candidates(layer, target))


def test_winograd_block_in_a_relax_module_matches_onnx_runtime():
    """A ResNet basic block on a map wide enough for Winograd by default: both convs, their bias,
    residual add and ReLUs become two Winograd kernel calls, checked against ONNX Runtime."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.05).astype(np.float32), n)
             for n, s in (("w1", (64, 64, 3, 3)), ("b1", (64,)), ("w2", (64, 64, 3, 3)), ("b2", (64,)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 8, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = get_target("host").tvm_target()
    mod, _ = import_onnx(model, batch=1)
    mod, layers = dense_conv_module(mod, TileBook(None), target)
    assert [(tile.winograd, layer.residual) for layer, tile in layers] == [(True, False), (True, True)]
    vm = relax.VirtualMachine(tvm.compile(finish(lower_fused(mod, target), target), target), tvm.cpu())
    x = rng.standard_normal((1, 64, 8, 16)).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_winograd_transforms_written_out_equal_the_matrix_forms():
    """The kernel's hand-expanded transforms against Bᵀ d B and Aᵀ m A, and U = G g Gᵀ end to end:
    for one 4×4 tile, Aᵀ[(Bᵀ d B) ⊙ U]A is the 2×2 'valid' correlation of d with g."""
    from tridesign.kernels.tir_winograd_conv import A_T, B_T, G, _v, _y

    rng = np.random.default_rng(5)
    d, m, g = rng.standard_normal((4, 4)), rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    v = np.array([[_v(lambda i, j: d[i, j], a, b) for b in range(4)] for a in range(4)])
    np.testing.assert_allclose(v, B_T @ d @ B_T.T, atol=1e-12)
    y = np.array([[_y(lambda a, b: m[a, b], i, j) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, A_T @ m @ A_T.T, atol=1e-12)
    tile = A_T @ ((B_T @ d @ B_T.T) * (G @ g @ G.T)) @ A_T.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(tile, direct, atol=1e-12)
