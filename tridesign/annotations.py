"""Sparsity annotations carried inside the ONNX graph: the one hand-off between stages.

The compiler writes them, and the kernels, the simulator and deployment read the same record, so a
simulation always describes what would be deployed. They live in the model's `metadata_props`:

- ``tridesign.weight_sparsity``: JSON ``{initializer name: WeightSparsity}`` -- which weights are
  pruned, how (``unstructured``, ``block:4x4``, ``nm:2:4``, ``pattern3x3:4of9``, ``channel``, ...), their
  density, and the mask itself, bit-packed, zlib-compressed and base64-encoded (a 90 %-sparse
  ResNet-18 mask costs a few hundred KB instead of 45 MB as float).
- ``tridesign.data_sparsity``: JSON `DataSparsity` -- the input-side sparsity the deployment will
  see (inactive tiles, dropped frames), which the simulator and the tile kernels consume; written
  by `tridesign track` with what it measured on a video, per layer where the executor reports it.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Annotated

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from tridesign.sparsity_plan import Method, parse_pattern

WEIGHT_KEY = "tridesign.weight_sparsity"
DATA_KEY = "tridesign.data_sparsity"


class WeightSparsity(BaseModel):
    """How one weight initializer was pruned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str  # e.g. "unstructured", "block", "nm", "pattern3x3", "channel", "zograsp"
    pattern: str  # e.g. "unstructured", "block:4x4", "nm:2:4", "pattern3x3:4of9", "channel"
    density: float  # fraction of non-zeros kept, 0..1
    shape: tuple[int, ...]
    mask: str | None = None  # encode_mask(); None when the mask is simply `weight != 0`
    original_shape: tuple[int, ...] | None = None  # set when channel pruning shrank the weight

    def decoded_mask(self) -> np.ndarray | None:
        return None if self.mask is None else decode_mask(self.mask, self.shape)

    def method_record(self) -> Method:
        """The typed method behind `pattern` (block shape, N:M, ...), so that readers match on a
        record instead of splitting the label; the stored string stays as it is, and old files load."""
        return parse_pattern(self.pattern, self.density)


class DataSparsity(BaseModel):
    """Input-side (data) sparsity a deployment expects: spatial tiles and temporal frames.

    Two forms. Without `layer_active_fraction` (an assumed operating point, a what-if, files written
    before the field existed) `active_tile_fraction` applies to every spatial layer. With it (a
    measurement: `tridesign track` fills it from the tile-sparse executor's per-layer report) each
    listed layer, keyed by its ONNX node name (`NodeProto.name`, e.g. `/conv1_3/Conv`, the name the
    executor and the simulator both see), runs on its own fraction, and an unlisted layer is dense:
    the tracked detector masks its backbone only, and its FPN and head compute every tile.
    `active_tile_fraction` then only summarises (the mean active patch area).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tile_px: int | None = None  # side of a square tile in input pixels (the paper uses 60)
    active_tile_fraction: float = 1.0  # fraction of tiles computed
    frame_keep_fraction: float = 1.0  # fraction of frames processed (1 - drop rate)
    layer_active_fraction: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = {}  # ONNX node name -> fraction
    source: str = ""  # what produced it (policy name, measured on which video)


def encode_mask(mask: np.ndarray) -> str:
    """Bit-pack, compress and base64 a boolean mask (its shape is stored next to it)."""
    packed = np.packbits(np.asarray(mask, dtype=bool).ravel())
    return base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode("ascii")


def decode_mask(text: str, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    raw = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    return np.unpackbits(raw, count=count).astype(bool).reshape(shape)


def _get_prop(model: onnx.ModelProto, key: str) -> str | None:
    for prop in model.metadata_props:
        if prop.key == key:
            return prop.value
    return None


def _set_prop(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def read_weight_sparsity(model: onnx.ModelProto) -> dict[str, WeightSparsity]:
    text = _get_prop(model, WEIGHT_KEY)
    if not text:
        return {}
    return {name: WeightSparsity.model_validate(rec) for name, rec in json.loads(text).items()}


def write_weight_sparsity(model: onnx.ModelProto, records: dict[str, WeightSparsity]) -> None:
    """Merge `records` into the model's annotation (a later pass overrides an earlier one per weight)."""
    merged = read_weight_sparsity(model) | records
    _set_prop(model, WEIGHT_KEY, json.dumps({k: v.model_dump(mode="json") for k, v in merged.items()}))


def read_data_sparsity(model: onnx.ModelProto) -> DataSparsity | None:
    text = _get_prop(model, DATA_KEY)
    return DataSparsity.model_validate_json(text) if text else None


def write_data_sparsity(model: onnx.ModelProto, record: DataSparsity) -> None:
    _set_prop(model, DATA_KEY, record.model_dump_json())
