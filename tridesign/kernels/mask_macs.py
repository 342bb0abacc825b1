"""Multiply-accumulates of a patch-masked network, from its ONNX graph: dense, and what skipping leaves.

The tri-design detector (`tridesign.models.video_detector`) multiplies the output of every
backbone convolution by the patch mask, nearest-resized to that feature map. This module finds
those convolutions in the ONNX graph and counts, for one frame's mask, the MACs of all
convolutions (`dense`) and of the output pixels the mask keeps (`active`): what an accelerator
that skips masked pixels computes, and what any backend can report — ONNX Runtime applies the
mask but computes everything, the tile-sparse TVM executor (`tridesign.kernels.tile_network`) adds
what it really computed. numpy and onnx only, so the ONNX Runtime path does not load TVM.

A convolution counts as masked when its output has one consumer, a `Mul` by the mask input
itself or by a nearest (asymmetric, floor) `Resize` of it: a dropped pixel is then exactly zero
whatever the convolution computes there. The mask at a feature map of (OH, OW) is the mask's cell
`(i·H/OH, j·W/OW)` rounded down (ONNX Resize nearest/asymmetric/floor, exact for the power-of-two
ratios of the detector). Weights count as dense here; the executor counts the non-zeros of the
pruned weights it runs sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from tridesign.errors import TridesignError


@dataclass(frozen=True)
class ConvSite:
    """One Conv node of the graph, with its shapes and the mask tensor multiplying its output."""

    node: str
    weight: str  # the weight initializer's name
    in_shape: tuple[int, int, int, int]
    out_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    feature_stride: int  # network input rows per output row (2 for the stem, 4 for C2, ... 32 for C5)
    mask: str | None  # the mask-derived tensor its output is multiplied by, None when unmasked

    @property
    def macs(self) -> int:
        n, co, oh, ow = self.out_shape
        return n * co * oh * ow * (self.in_shape[1] // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.out_shape[2], self.out_shape[3]


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _static(shapes: dict[str, tuple], name: str, node: onnx.NodeProto) -> tuple[int, ...]:
    shape = shapes.get(name)
    if shape is None or any(not isinstance(d, int) or d <= 0 for d in shape):
        raise TridesignError(f"Conv node {node.name or '<unnamed>'!r}: tensor {name!r} has no static shape")
    return shape


def _shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # sizes from Shape/Slice/Concat
    out = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        out[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    for init in model.graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def mask_tensors(model: onnx.ModelProto, mask_input: str) -> set[str]:
    """The mask input and every nearest/asymmetric/floor Resize of it (or of such a Resize)."""
    derived = {mask_input}
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if (
            node.op_type == "Resize"
            and node.input[0] in derived
            and _attr(node, "mode", "nearest") == "nearest"
            and _attr(node, "coordinate_transformation_mode", "half_pixel") == "asymmetric"
            and _attr(node, "nearest_mode", "round_prefer_floor") == "floor"
        ):
            derived.add(node.output[0])
    return derived


def conv_sites(model: onnx.ModelProto, mask_input: str = "patch_mask") -> list[ConvSite]:
    """Every Conv node in graph order, with the mask tensor its output is multiplied by, if any."""
    shapes = _shapes(model)
    masks = mask_tensors(model, mask_input)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    initializers = {i.name for i in model.graph.initializer}
    images = [i.name for i in model.graph.input if i.name not in initializers and i.name != mask_input]
    net_rows = shapes[images[0]][2] if images and len(shapes.get(images[0], ())) == 4 else None
    sites = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out = node.output[0]
        users = consumers.get(out, [])
        mask = None
        if len(users) == 1 and users[0].op_type == "Mul" and out not in graph_outputs:
            other = [i for i in users[0].input if i != out]
            if len(other) == 1 and other[0] in masks:
                mask = other[0]
        w_shape = _static(shapes, node.input[1], node)
        out_shape = _static(shapes, out, node)
        sites.append(
            ConvSite(
                node=node.name or out,
                weight=node.input[1],
                in_shape=_static(shapes, node.input[0], node),
                out_shape=out_shape,
                kernel=(int(w_shape[2]), int(w_shape[3])),
                stride=tuple(_attr(node, "strides", [1, 1])),
                groups=int(_attr(node, "group", 1)),
                feature_stride=net_rows // out_shape[2] if net_rows else 1,
                mask=mask,
            )
        )
    return sites


def layer_mask(patch_mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The (OH, OW) boolean keep-mask of a feature map: nearest (floor) resize of the patch mask."""
    cells = np.asarray(patch_mask).reshape(np.asarray(patch_mask).shape[-2:])
    h, w = cells.shape
    oh, ow = out_hw
    rows = np.arange(oh) * h // oh
    cols = np.arange(ow) * w // ow
    return cells[rows][:, cols] != 0


def conv_macs(model: onnx.ModelProto, patch_mask: np.ndarray, mask_input: str = "patch_mask", sites: list[ConvSite] | None = None) -> dict:
    """Dense and active MACs of every convolution for one frame's patch mask.

    Returns `dense` and `active` (totals), `computed` (= dense: what a backend that applies the mask
    without skipping computes, ONNX Runtime or dense TVM; the tile-sparse executor replaces it with
    its own count) and `layers`: per Conv node its name, its stride and its
    output's stride from the network input (`feature_stride`), whether it is masked, the fraction of its output pixels the mask keeps, and its dense and active MACs.
    `sites` (from `conv_sites`) saves re-reading the graph when called per frame.
    """
    sites = conv_sites(model, mask_input) if sites is None else sites
    layers = []
    for site in sites:
        fraction = float(layer_mask(patch_mask, site.out_hw).mean()) if site.mask else 1.0
        layers.append({
            "node": site.node,
            "stride": list(site.stride),
            "feature_stride": site.feature_stride,
            "masked": site.mask is not None,
            "active_fraction": fraction,
            "dense": site.macs,
            "active": int(round(site.macs * fraction)),
        })
    dense = sum(layer["dense"] for layer in layers)
    return {"dense": dense, "active": sum(layer["active"] for layer in layers), "computed": dense, "layers": layers}
