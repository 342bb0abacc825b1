"""The tile-sparse executor on the tiny masked detector: same outputs as ONNX Runtime, honest MAC counts.

One network serves every test (building it compiles ~25 kernels): the tiny `CenterDetector`
(random weights, random BatchNorm statistics folded into the convs) with half of its backbone
convolutions and the FPN output conv pattern-pruned to ~90 %, so it runs every kernel kind: masked
dense weights, masked CSR, unmasked CSR (FPN) and the dense register-tiled kernels (the rest).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.errors import TridesignError
from tridesign.kernels.mask_macs import conv_macs, conv_sites

pytest.importorskip("tvm")
from tridesign.kernels.tile_network import TileSparseNetwork  # noqa: E402

# Outputs agree with ONNX Runtime to this fraction of the output's largest magnitude (fp32 rounding
# of a different accumulation order; measured ~1e-7).
TOLERANCE = 1e-4
PRUNED = ("/conv2/Conv", "/conv2_1/Conv", "/conv2_2/Conv", "/conv1_5/Conv", "/downsample/downsample.0_1/Conv",
          "/conv2_6/Conv", "/neck/output.0/Conv")


def _pattern_prune(w: np.ndarray, density: float = 0.1) -> np.ndarray:
    """3x3: each kernel keeps its best 4-of-9 pattern and only the strongest kernels survive, so that
    `density` of the weights are left (the tri-design pattern + connectivity pruning); else magnitude."""
    from tridesign.compiler.sparsity.pattern import PATTERNS

    if w.shape[2:] != (3, 3):
        keep = max(1, round(w.size * density))
        threshold = np.sort(np.abs(w).ravel())[-keep]
        return np.where(np.abs(w) >= threshold, w, 0).astype(np.float32)
    kernels = w.reshape(-1, 9).astype(np.float64)
    energy = kernels**2 @ PATTERNS.reshape(len(PATTERNS), 9).T
    best = energy.argmax(axis=1)
    survivors = np.argsort(-energy.max(axis=1))[: max(1, round(len(kernels) * density * 9 / 4))]
    mask = np.zeros(kernels.shape, bool)
    mask[survivors] = PATTERNS.reshape(-1, 9)[best[survivors]]
    return (w.reshape(-1, 9) * mask).reshape(w.shape).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    import torch

    from tridesign.compiler.export import torch_to_onnx
    from tridesign.models.video_detector import CENTER_CONFIGS, CenterDetector

    torch.manual_seed(0)
    net = CenterDetector(CENTER_CONFIGS["tiny"]).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    inputs = {"image": np.zeros((1, 3, 64, 96), np.float32), "patch_mask": np.ones((1, 1, 4, 6), np.float32)}
    proto = torch_to_onnx(net, inputs, ("heatmap", "boxes"))
    weights = {node.name: node.input[1] for node in proto.graph.node if node.op_type == "Conv"}
    targets = {weights[name] for name in PRUNED}
    for init in proto.graph.initializer:
        if init.name in targets:
            init.CopyFrom(numpy_helper.from_array(_pattern_prune(numpy_helper.to_array(init)), init.name))
    return proto


@pytest.fixture(scope="module")
def network(model) -> TileSparseNetwork:
    return TileSparseNetwork(model)


@pytest.fixture(scope="module")
def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _inputs(seed: int, keep: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((1, 3, 64, 96), dtype=np.float32), (rng.random((1, 1, 4, 6)) < keep).astype(np.float32)


def _assert_matches(network, session, image, mask):
    got = network.run(image, mask)
    want = dict(zip(("heatmap", "boxes"), session.run(None, {"image": image, "patch_mask": mask})))
    assert set(got) == set(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape
        np.testing.assert_allclose(got[name], ref, rtol=0, atol=TOLERANCE * np.abs(ref).max(), err_msg=name)


def test_every_kernel_kind_runs(network):
    kinds = {plan.node: plan.kernel for plan in network.plans}
    assert kinds["/conv1/Conv"] == "masked" and kinds["/conv2/Conv"] == "masked_csr"
    assert kinds["/neck/output.0/Conv"] == "csr" and kinds["/head/conv/Conv"] == "dense"
    masked = [plan.node for plan in network.plans if plan.site.mask is not None]
    assert len(masked) == 20 and all(kinds[node].startswith("masked") for node in masked)  # the whole backbone
    assert network.build_s > 0


@pytest.mark.parametrize("seed, keep", [(0, 0.8), (1, 0.5), (2, 0.2)])
def test_outputs_match_onnx_runtime_for_random_masks(network, session, seed, keep):
    _assert_matches(network, session, *_inputs(seed, keep))


def test_all_ones_mask_is_the_dense_network(network, session):
    image, _ = _inputs(3, 1.0)
    ones = np.ones((1, 1, 4, 6), np.float32)
    _assert_matches(network, session, image, ones)
    macs = network.macs(ones)
    assert macs["active"] == macs["dense"]
    for layer in macs["layers"]:
        if layer["kernel"] == "masked":  # every pixel computed, in whole groups
            assert layer["computed"] >= layer["dense"]


def test_all_zero_mask_computes_no_backbone_macs(network, session):
    image, _ = _inputs(4, 1.0)
    zeros = np.zeros((1, 1, 4, 6), np.float32)
    _assert_matches(network, session, image, zeros)
    macs = network.macs(zeros)
    backbone = [layer for layer in macs["layers"] if layer["masked"]]
    assert backbone and all(layer["computed"] == 0 and layer["active"] == 0 for layer in backbone)
    assert macs["computed"] == sum(layer["computed"] for layer in macs["layers"] if not layer["masked"]) > 0


def test_pruned_layers_compute_only_their_non_zeros(network):
    _, mask = _inputs(5, 0.7)
    macs = network.macs(mask)
    layers = {layer["node"]: layer for layer in macs["layers"]}
    for node in PRUNED:
        layer = layers[node]
        assert layer["kernel"] in ("masked_csr", "csr") and layer["weight_density"] <= 0.15
        # CSR: non-zeros only, so well below the active MACs even with the lanes a run wastes
        assert 0 < layer["computed"] < 0.5 * layer["active"]
    # The unmasked FPN conv by hand: a 16×24 map on the 26-column padded pitch is narrower than two
    # runs of 16, so its runs go across rows: ceil((15·26 + 24) / 16) = 26 runs, computed in groups
    # of 8: 32 runs of 16 lanes per output channel, each lane one MAC per non-zero weight.
    fpn = next(p for p in network.plans if p.node == "/neck/output.0/Conv")
    assert layers["/neck/output.0/Conv"]["computed"] == 32 * 16 * fpn.nnz
    dense_weights = [layers[n] for n in layers if layers[n]["kernel"] == "masked"]
    assert all(layer["computed"] >= layer["active"] for layer in dense_weights)
    assert macs["computed"] < macs["active"] < macs["dense"]


def test_mac_counts_agree_with_a_hand_count(model, network):
    mask = np.ones((1, 1, 4, 6), np.float32)
    mask[0, 0, 0, :] = 0  # the top row of cells: a quarter of every feature map
    mask[0, 0, 1, 0] = 0
    stem = next(layer for layer in network.macs(mask)["layers"] if layer["node"] == "/conv1/Conv")
    dense = 8 * 3 * 7 * 7 * 32 * 48  # out channels × in channels × 7×7 × the 32×48 output of the stem
    active_pixels = 32 * 48 - 8 * 48 - 8 * 8  # one cell = 8×8 output pixels at stride 2
    assert stem["dense"] == dense and stem["active"] == active_pixels * 8 * 3 * 49
    assert stem["active_fraction"] == pytest.approx(active_pixels / (32 * 48))
    pixels = network.plans[0].tile.pixels
    assert stem["computed"] == -(-active_pixels // pixels) * pixels * 8 * 3 * 49
    # the pure function reports the same without any executor
    pure = conv_macs(model, mask)
    assert pure["dense"] == network.macs(mask)["dense"] and pure["active"] == network.macs(mask)["active"]
    assert pure["computed"] == pure["dense"]
    strides = {site.node: site.feature_stride for site in conv_sites(model)}
    assert strides["/conv1/Conv"] == 2 and strides["/conv1_1/Conv"] == 4 and strides["/conv2_7/Conv"] == 32


def _one_node_model(op: str, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="the_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_operator_tvm_cannot_import_is_refused_by_node_name():
    with pytest.raises(TridesignError) as err:
        TileSparseNetwork(_one_node_model("Multinomial"), mask_input="x")
    assert "the_node" in str(err.value) and "\n" not in str(err.value)


def test_a_symbolic_input_is_refused():
    model = _one_node_model("Relu")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(TridesignError, match="symbolic"):
        TileSparseNetwork(model, mask_input="x")
