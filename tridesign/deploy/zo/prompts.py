"""Prompt mode: a TVP-style "framepad" visual prompt in front of a frozen ONNX model.

TVP (CVPR'23) learns a border of `pad` pixels that replaces the outer frame of every input image
while the encoders stay frozen. Here the border is four trainable initializers (`prompt.top`,
`prompt.bottom`, `prompt.left`, `prompt.right`) composed in the graph in front of the model:

    x' = x · keep + frame(top, bottom, left, right)      (keep is 0 on the border, 1 inside)

so ZO finetuning with `--params 'prompt.*'` tunes the prompt only, through the same engine,
loop, checkpoints and CLI as any other parameter. Only the border is parameterized, so no query
direction is spent on pixels the prompt never touches.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tridesign.deploy.zo.params import data_inputs
from tridesign.errors import UsageError

PROMPT_NAMES = ("prompt.top", "prompt.bottom", "prompt.left", "prompt.right")


def add_frame_prompt(model: onnx.ModelProto, pad: int, input_name: str | None = None) -> onnx.ModelProto:
    """A copy of `model` whose image input (N, C, H, W) first gets a zero-initialized framepad prompt."""
    inputs = data_inputs(model)
    value = next((i for i in inputs if i.name == (input_name or inputs[0].name)), None)
    if value is None:
        raise UsageError(f"model has no input {input_name!r}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise UsageError(f"input {value.name!r} is not an image batch with static (C, H, W): {dims}")
    c, h, w = dims[1:]
    if not 0 < pad < min(h, w) // 2:
        raise UsageError(f"prompt pad {pad} must be between 1 and {min(h, w) // 2 - 1} for {h}x{w} images")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inner = value.name + "__prompted"
    for node in out.graph.node:
        for i, name in enumerate(node.input):
            if name == value.name:
                node.input[i] = inner
    keep = np.zeros((1, c, h, w), np.float32)
    keep[:, :, pad : h - pad, pad : w - pad] = 1.0
    shapes = {
        "prompt.top": (1, c, pad, w),
        "prompt.bottom": (1, c, pad, w),
        "prompt.left": (1, c, h - 2 * pad, pad),
        "prompt.right": (1, c, h - 2 * pad, pad),
    }
    inits = [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in shapes.items()]
    inits += [
        numpy_helper.from_array(keep, "prompt__keep"),
        numpy_helper.from_array(np.zeros((1, c, h - 2 * pad, w - 2 * pad), np.float32), "prompt__hole"),
    ]
    nodes = [
        helper.make_node("Concat", ["prompt.left", "prompt__hole", "prompt.right"], ["prompt__middle"], axis=3),
        helper.make_node("Concat", ["prompt.top", "prompt__middle", "prompt.bottom"], ["prompt__frame"], axis=2),
        helper.make_node("Mul", [value.name, "prompt__keep"], ["prompt__kept"]),
        helper.make_node("Add", ["prompt__kept", "prompt__frame"], [inner], name="/prompt/Add"),
    ]
    graph_nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes + graph_nodes)
    out.graph.initializer.extend(inits)
    onnx.checker.check_model(out)
    return out
