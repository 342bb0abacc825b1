"""The model registry: every project's models, their configurations and example inputs.

A `ModelSpec` is all the toolchain needs to know about a model: how to build it in torch for a
named configuration, which inputs it takes (as numpy arrays, so the device side never needs torch),
what its outputs are called, and how closely its ONNX export must match torch. Models register
explicitly in `tridesign/models/__init__.py`; there is no import-time discovery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tridesign.errors import UsageError

if TYPE_CHECKING:
    import torch

PARAMS_SOURCES = ("paper", "model card", "derived")
INDEPENDENT_SOURCES = ("paper", "model card")

InputFactory = Callable[[str, int, int], dict[str, np.ndarray]]
"""(config, batch, seed) -> {input name: array}, in the order the torch forward takes them."""


@dataclass(frozen=True)
class ModelSpec:
    """What the toolchain knows about one registered model."""

    name: str
    project: str
    task: str
    build: Callable[[str], "torch.nn.Module"]
    example_inputs: InputFactory
    output_names: tuple[str, ...]
    configs: tuple[str, ...] = ("tiny", "paper")
    default_config: str = "tiny"
    # Max abs error tolerated between torch and ONNX Runtime in fp32 (the default is 1e-4).
    atol: float = 1e-4
    # Published parameter count of the `paper` config and where it comes from (`published_source`
    # cites it). `params_source` says whether that count is independent of our code: "paper" or
    # "model card" (printed by the authors or the weights' documentation), or "derived" (added up
    # from the released configuration's layout, the layout our builder also follows). Only an
    # independent count can check the builder; a derived one would only check itself. Unknown
    # provenance defaults to "derived", so nothing is claimed as independent by omission.
    published_params: int | None = None
    published_source: str = ""
    params_source: str = "derived"
    # Where a project splits a model across a trust or deployment boundary: part label -> model name.
    parts: Mapping[str, str] = field(default_factory=dict)
    # Dynamic axes for export: input/output name -> {axis: label}.
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    # Extra facts a model wants in its manifest (architecture source, assumptions).
    notes: Mapping[str, Any] = field(default_factory=dict)
    # Loads trained weights into a built module (config given); None = random init from the seed.
    # Kept apart from `build` so sizes can still be counted on the meta device without weights.
    weights: Callable[["torch.nn.Module", str], None] | None = None
    # Representative inputs for int8 calibration (task data); None = seeded example inputs.
    calibration: Callable[[str, int], list[dict[str, np.ndarray]]] | None = None

    def __post_init__(self) -> None:
        if self.params_source not in PARAMS_SOURCES:
            raise ValueError(f"model {self.name!r}: params_source must be one of {PARAMS_SOURCES}, not {self.params_source!r}")

    @property
    def independent_params(self) -> bool:
        """Whether `published_params` was printed by someone else (a paper or model card), so that
        comparing the built model with it checks the builder."""
        return self.published_params is not None and self.params_source in INDEPENDENT_SOURCES

    def instantiate(self, config: str) -> "torch.nn.Module":
        """The model of `config` in eval mode, with trained weights where the model has them."""
        module = self.build(config)
        if self.weights is not None:
            self.weights(module, config)
        return module.eval()

    def check_config(self, config: str) -> None:
        if config not in self.configs:
            raise UsageError(f"model {self.name!r} has no config {config!r} (has: {', '.join(self.configs)})")


# Filled by the project modules, which tridesign/models/__init__.py imports one by one; Python
# runs that __init__ before this module, so the table is complete whenever it is read.
_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model; a second model with the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, with a one-line error that lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown model {name!r}; known models: {known}") from None


def list_models() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def is_registered(name: str) -> bool:
    return name in _REGISTRY

