"""Parameter and MAC counts of a registered model, on the `meta` device.

Paper-size models (SDXL + ControlNet: ~3.8 B parameters) cannot be allocated on a 24 GiB laptop, but
their sizes still have to be checked against the published ones. Building under
`torch.device("meta")` creates shapes without storage, and `FlopCounterMode` counts the FLOPs of a
forward pass on meta tensors of the example inputs' shapes, so both counts cost no memory and
take seconds. MACs are FLOPs / 2 (FlopCounterMode counts a multiply-accumulate as two FLOPs).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tridesign.models.registry import ModelSpec, get_model


def count_params(spec: ModelSpec | str, config: str) -> int:
    """Number of parameters (buffers such as BN running statistics excluded) of `config`."""
    spec = get_model(spec) if isinstance(spec, str) else spec
    spec.check_config(config)
    return _count_params(spec.name, config)


def count_macs(spec: ModelSpec | str, config: str, batch: int = 1) -> int:
    """Dense multiply-accumulates of one forward pass on the spec's example inputs of `config`."""
    spec = get_model(spec) if isinstance(spec, str) else spec
    spec.check_config(config)
    return _count_macs(spec.name, config, batch)


@lru_cache(maxsize=None)
def _count_params(name: str, config: str) -> int:
    import torch

    spec = get_model(name)
    with torch.device("meta"):
        model = spec.build(config)
    return sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=None)
def _count_macs(name: str, config: str, batch: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_model(name)
    with torch.device("meta"):
        model = spec.build(config).eval()
    inputs = [_meta_tensor(a) for a in spec.example_inputs(config, batch, 0).values()]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def _meta_tensor(array: np.ndarray):
    import torch

    return torch.empty(array.shape, dtype=torch.from_numpy(np.zeros(0, dtype=array.dtype)).dtype, device="meta")
