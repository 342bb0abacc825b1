"""The pruning SPEC: one readable string per method, or a YAML file with per-layer rules.

Strings (the sparsity is the fraction of weights removed, 0 <= s < 1):

- ``unstructured:0.8``         global L1 magnitude over all prunable weights (``:layer`` = per layer)
- ``block:0.9:4x4``            zero whole (rows x cols) blocks of each weight's 2-D view, per layer
- ``nm:2:4``                   keep N of every M consecutive weights along the reduction axis
- ``pattern:4:0.9``            tri-design 3x3 pattern pruning: global L1 at 0.9, then 4-of-9 patterns
- ``channel:0.5``              remove 50 % of the output channels of every prunable layer (physically in torch)
- ``zograsp:0.9``              DeepZero's ZO-GraSP at init: ZO scores give per-layer ratios, then magnitude
- ``none``                     keep dense (useful in a per-layer rule)

A YAML file maps layer-name globs to SPEC strings; the first matching rule wins and ``default``
covers the rest (``none`` when absent)::

    default: unstructured:0.8
    layers:
      conv1: none             # keep the stem dense
      "layer3.*": nm:2:4

Layer names are torch module names (``layer1.0.conv1``) for registered models and initializer
names for ONNX files.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tridesign.errors import UsageError

METHODS = ("unstructured", "block", "nm", "pattern", "channel", "zograsp", "none")


@dataclass(frozen=True)
class PruneSpec:
    """One parsed SPEC string."""

    method: str
    sparsity: float = 0.0
    scope: str = "global"  # "global" or "layer": where magnitudes are ranked (unstructured)
    block: tuple[int, int] = (1, 1)
    n: int = 0
    m: int = 0
    keep: int = 4  # entries kept per 3x3 kernel (pattern)

    @property
    def text(self) -> str:
        if self.method == "block":
            return f"block:{self.sparsity:g}:{self.block[0]}x{self.block[1]}"
        if self.method == "nm":
            return f"nm:{self.n}:{self.m}"
        if self.method == "pattern":
            return f"pattern:{self.keep}:{self.sparsity:g}"
        if self.method == "unstructured" and self.scope == "layer":
            return f"unstructured:{self.sparsity:g}:layer"
        if self.method == "none":
            return "none"
        return f"{self.method}:{self.sparsity:g}"

    @property
    def pattern_label(self) -> str:
        """The `pattern` field of the WeightSparsity record this spec produces."""
        if self.method == "block":
            return f"block:{self.block[0]}x{self.block[1]}"
        if self.method == "nm":
            return f"nm:{self.n}:{self.m}"
        if self.method == "pattern":
            return f"pattern3x3:{self.keep}of9"
        if self.method == "zograsp":
            return "unstructured"
        return self.method


@dataclass(frozen=True)
class SpecPlan:
    """Which spec applies to which layer: ordered (glob, spec) rules and a default."""

    default: PruneSpec
    rules: tuple[tuple[str, PruneSpec], ...] = field(default_factory=tuple)

    def for_layer(self, name: str) -> PruneSpec:
        for glob, spec in self.rules:
            if fnmatch.fnmatchcase(name, glob):
                return spec
        return self.default

    def specs(self) -> list[PruneSpec]:
        return [self.default, *(s for _, s in self.rules)]


def _ratio(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"bad sparsity {text!r} in prune spec {spec!r} (a number in [0, 1))") from None
    if not 0.0 <= value < 1.0:
        raise UsageError(f"sparsity {value} in prune spec {spec!r} must be in [0, 1)")
    return value


def _int(text: str, spec: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"bad integer {text!r} in prune spec {spec!r}")
    return int(text)


def parse_spec(text: str) -> PruneSpec:
    """Parse one SPEC string; every malformed spec is a UsageError naming the expected form."""
    parts = text.strip().lower().split(":")
    method, args = parts[0], parts[1:]
    forms = {
        "unstructured": "unstructured:S[:layer]",
        "block": "block:S:RxC",
        "nm": "nm:N:M",
        "pattern": "pattern:K:S",
        "channel": "channel:S",
        "zograsp": "zograsp:S",
        "none": "none",
    }
    if method not in forms:
        raise UsageError(f"unknown prune method {method!r} in {text!r}; methods: {', '.join(METHODS)}")
    bad = UsageError(f"prune spec {text!r} does not read as {forms[method]}")
    if method == "none":
        if args:
            raise bad
        return PruneSpec("none")
    if method == "unstructured":
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] not in ("layer", "global")):
            raise bad
        return PruneSpec(method, _ratio(args[0], text), scope=args[1] if len(args) == 2 else "global")
    if method == "block":
        if len(args) != 2 or not re.fullmatch(r"\d+x\d+", args[1]):
            raise bad
        rows, cols = (_int(v, text) for v in args[1].split("x"))
        return PruneSpec(method, _ratio(args[0], text), scope="layer", block=(rows, cols))
    if method == "nm":
        if len(args) != 2:
            raise bad
        n, m = _int(args[0], text), _int(args[1], text)
        if n > m:
            raise UsageError(f"N:M spec {text!r} needs N <= M")
        return PruneSpec(method, 1.0 - n / m, scope="layer", n=n, m=m)
    if method == "pattern":
        if len(args) != 2:
            raise bad
        keep = _int(args[0], text)
        if keep != 4:
            raise UsageError(f"pattern pruning uses the tri-design 4-of-9 patterns; got {keep} in {text!r}")
        return PruneSpec(method, _ratio(args[1], text), keep=keep)
    if len(args) != 1:
        raise bad
    return PruneSpec(method, _ratio(args[0], text), scope="layer" if method == "channel" else "global")


def load_plan(spec: str | Path) -> SpecPlan:
    """A SPEC string, or the path of a YAML file with per-layer rules."""
    path = Path(spec)
    if isinstance(spec, Path) or str(spec).endswith((".yaml", ".yml")):
        if not path.is_file():
            raise UsageError(f"prune spec file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UsageError(f"prune spec file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict) or set(data) - {"default", "layers"}:
            raise UsageError(f"prune spec file {path} may hold only 'default' and 'layers'")
        layers = data.get("layers") or {}
        if not isinstance(layers, dict):
            raise UsageError(f"'layers' in {path} must map layer-name globs to specs")
        rules = tuple((str(glob), parse_spec(str(text))) for glob, text in layers.items())
        plan = SpecPlan(parse_spec(str(data.get("default", "none"))), rules)
    else:
        plan = SpecPlan(parse_spec(str(spec)))
    channel = [s for s in plan.specs() if s.method == "channel"]
    if channel and any(s.method not in ("channel", "none") for s in plan.specs()):
        raise UsageError("channel pruning cannot be mixed with other methods in one spec (run it first)")
    return plan
