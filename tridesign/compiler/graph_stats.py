"""Parameter count read off an ONNX graph (what the profile reports).

It comes from the graph, not from torch, so it holds for any ONNX a user brings. Dense MACs come
from the simulator's workload extraction (tridesign.hwsim.workload), the one MAC counter of an ONNX
graph, which the simulator's reports are built on too.
"""

from __future__ import annotations

import numpy as np
import onnx


# Shapes, axes and indices are stored as int32/int64 initializers: they are not parameters.
INDEX_TYPES = (onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.BOOL)


def count_params(model: onnx.ModelProto) -> int:
    """Elements of the weight initializers: float ones, and the int8 weights of a quantized graph."""
    return sum(int(np.prod(init.dims)) for init in model.graph.initializer if init.data_type not in INDEX_TYPES)
