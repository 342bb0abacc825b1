"""What to prune and how: one typed record per method, one grammar, one parser for each spelling.

Sparsity used to be a string that the compiler's passes, the simulator's what-if masks, the sparse
kernels and the simulator's metadata model each split apart again, with two grammars between them.
Now text is parsed once, where it enters (the CLI, a YAML plan, an ONNX annotation), into the
frozen records below, and every consumer matches on their types.

The grammar (`--prune`, `sweep --weights`, per-layer YAML rules); a sparsity is the fraction of
weights removed, 0 <= s < 1:

- ``unstructured:0.8``   global L1 magnitude over all prunable weights of the group (``:layer``: per layer)
- ``block:0.9:4x4``      zero whole (rows x cols) blocks of each weight's 2-D view, per layer
- ``nm:2:4``             keep N of every M consecutive weights along the reduction axis
- ``pattern:4:0.9``      tri-design 3x3 pattern pruning: global L1 at 0.9, then 4-of-9 patterns (``:layer``: L1 per layer)
- ``channel:0.5``        remove 50 % of the output channels of every prunable layer (physically in torch)
- ``zograsp:0.9``        DeepZero's ZO-GraSP at init: ZO scores give per-layer ratios, then magnitude
- ``none``               keep dense (useful in a per-layer rule)

A YAML file maps layer-name globs to SPEC strings; the first matching rule wins and ``default``
covers the rest (``none`` when absent)::

    default: unstructured:0.8
    min_density: 0.02         # optional per-layer floor (--min-density), DEFAULT_MIN_DENSITY if absent
    layers:
      conv1: none             # keep the stem dense
      "layer3.*": nm:2:4

Every plan carries a per-layer floor, `min_density`: no layer a ranking prunes (global or per-layer
magnitude, blocks, patterns, ZO-GraSP's ratios, filters zeroed on ONNX) keeps fewer than
``ceil(min_density * n)`` of its n weights (blocks, filters). Global magnitude ranking over layers
of different scales can otherwise empty a whole layer -- a random-init ResNet-18 at
``unstructured:0.9`` loses three 512x512 convolutions entirely, each then computing a constant --
while the totals still read as the sparsity asked for.

Layer names are torch module names (``layer1.0.conv1``) for registered models and initializer
names for ONNX files.

The `WeightSparsity` annotation inside an ONNX file stores a shorter *pattern label* per weight
(``unstructured``, ``block:4x4``, ``nm:2:4``, ``pattern3x3:4of9``, ``channel``, ``channel:zeroed``):
the structure the kernels and the simulator need, without the amount, which the record's measured
density gives. `parse_pattern` reads it back into a record, so old files load unchanged.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Union

import yaml

from tridesign.errors import TridesignError, UsageError

FORMS = {
    "unstructured": "unstructured:S[:layer]",
    "block": "block:S:RxC",
    "nm": "nm:N:M",
    "pattern": "pattern:K:S[:layer]",
    "channel": "channel:S",
    "zograsp": "zograsp:S",
    "none": "none",
}
METHODS = tuple(FORMS)
PATTERN_KEEP = 4  # entries a 3x3 kernel keeps: the tri-design library holds 4-of-9 patterns only
# 1 % of a layer's weights: ten times below the average density of the sparsest plan in common use
# (0.9), so it binds only on a layer global ranking has all but emptied, and it keeps at least one
# weight (block, filter) of every layer, so no layer is cut out of the network.
DEFAULT_MIN_DENSITY = 0.01
_INT = re.compile(r"[0-9]+")
_SHAPE = re.compile(r"([0-9]+)x([0-9]+)")


def _number(value: float) -> str:
    """`value` as written by hand (``0.8``), or in full where ``:g`` would round it (``0.1234567891``):
    parsing a record's text must give back the same record, or a manifest would describe another plan."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


class _Method:
    """What every record offers: its canonical `text`, its `density`, and the `annotation_method`
    (the `WeightSparsity.method` value; subclasses also give the `pattern` label)."""

    method: ClassVar[str]

    @property
    def density(self) -> float:
        return 1.0 - self.sparsity  # type: ignore[attr-defined]

    @property
    def annotation_method(self) -> str:
        return self.method

    def __str__(self) -> str:
        return self.text  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Unstructured(_Method):
    """Single weights by L1 magnitude, ranked over the whole group (`global`) or within each layer."""

    sparsity: float
    scope: Literal["global", "layer"] = "global"
    method: ClassVar[str] = "unstructured"
    pattern: ClassVar[str] = "unstructured"

    @property
    def text(self) -> str:
        return f"unstructured:{_number(self.sparsity)}" + (":layer" if self.scope == "layer" else "")


@dataclass(frozen=True)
class Block(_Method):
    """Whole (rows x cols) blocks of the weight's (out, reduction) matrix: the BSR kernels' block."""

    sparsity: float
    rows: int
    cols: int
    method: ClassVar[str] = "block"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def text(self) -> str:
        return f"block:{_number(self.sparsity)}:{self.rows}x{self.cols}"

    @property
    def pattern(self) -> str:
        return f"block:{self.rows}x{self.cols}"


@dataclass(frozen=True)
class NM(_Method):
    """N of every M consecutive weights along the reduction axis (a convolution's: M consecutive input
    channels at each kernel position, the layout of NVIDIA's sparse tensor cores); the structure fixes
    the sparsity."""

    n: int
    m: int
    method: ClassVar[str] = "nm"

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    @property
    def text(self) -> str:
        return f"nm:{self.n}:{self.m}"

    @property
    def pattern(self) -> str:
        return self.text


@dataclass(frozen=True)
class Pattern3x3(_Method):
    """Tri-design pattern pruning: L1 at `sparsity` (ranked over the group, or within each layer with
    scope `layer`), then `keep`-of-9 patterns per 3x3 kernel. Per-layer ranking prunes every layer
    alike, as the tri-design paper does; global ranking leaves the many-weight, few-MAC deep layers
    the sparsest and the high-resolution early layers (most of a detector's MACs) nearly dense."""

    sparsity: float
    keep: int = PATTERN_KEEP
    scope: Literal["global", "layer"] = "global"
    method: ClassVar[str] = "pattern"
    annotation_method: ClassVar[str] = "pattern3x3"  # type: ignore[misc]

    @property
    def text(self) -> str:
        return f"pattern:{self.keep}:{_number(self.sparsity)}" + (":layer" if self.scope == "layer" else "")

    @property
    def pattern(self) -> str:
        return f"pattern3x3:{self.keep}of9"


@dataclass(frozen=True)
class Channel(_Method):
    """A fraction of each layer's output channels. `zeroed` is not part of the SPEC: it records that
    the ONNX pass zeroed the filters instead of removing them (an arbitrary graph cannot be shrunk
    safely), which the annotation label keeps apart."""

    sparsity: float
    zeroed: bool = False
    method: ClassVar[str] = "channel"

    @property
    def text(self) -> str:
        return f"channel:{_number(self.sparsity)}"

    @property
    def pattern(self) -> str:
        return "channel:zeroed" if self.zeroed else "channel"


@dataclass(frozen=True)
class ZOGrasp(_Method):
    """DeepZero's ZO-GraSP: per-layer ratios from ZO scores, then magnitude (an unstructured mask)."""

    sparsity: float
    method: ClassVar[str] = "zograsp"
    pattern: ClassVar[str] = "unstructured"

    @property
    def text(self) -> str:
        return f"zograsp:{_number(self.sparsity)}"


@dataclass(frozen=True)
class NoSparsity(_Method):
    """Keep the weight dense (a per-layer rule's way to exempt layers)."""

    sparsity: ClassVar[float] = 0.0
    method: ClassVar[str] = "none"
    pattern: ClassVar[str] = "dense"
    text: ClassVar[str] = "none"


Method = Union[Unstructured, Block, NM, Pattern3x3, Channel, ZOGrasp, NoSparsity]


def _ratio(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"bad sparsity {text!r} in prune spec {spec!r} (a number in [0, 1))") from None
    if not 0.0 <= value < 1.0:
        raise UsageError(f"sparsity {value} in prune spec {spec!r} must be in [0, 1)")
    return value


def _int(text: str, spec: str) -> int:
    if not _INT.fullmatch(text) or int(text) < 1:
        raise UsageError(f"bad integer {text!r} in prune spec {spec!r}")
    return int(text)


def parse_method(text: str) -> Method:
    """Parse one SPEC string; every malformed spec is a one-line UsageError naming the expected form."""
    method, *args = text.strip().lower().split(":")
    if method not in FORMS:
        raise UsageError(f"unknown prune method {method!r} in {text!r}; methods: {', '.join(METHODS)}")
    match method, args:
        case "none", []:
            return NoSparsity()
        case "unstructured", [sparsity]:
            return Unstructured(_ratio(sparsity, text))
        case "unstructured", [sparsity, ("global" | "layer") as scope]:
            return Unstructured(_ratio(sparsity, text), scope)
        case "block", [sparsity, shape] if _SHAPE.fullmatch(shape):
            rows, cols = (_int(v, text) for v in shape.split("x"))
            return Block(_ratio(sparsity, text), rows, cols)
        case "nm", [n, m]:
            n_, m_ = _int(n, text), _int(m, text)
            if n_ > m_:
                raise UsageError(f"N:M spec {text!r} needs N <= M")
            return NM(n_, m_)
        case "pattern", [keep, sparsity, *scope] if scope in ([], ["global"], ["layer"]):
            if (kept := _int(keep, text)) != PATTERN_KEEP:
                raise UsageError(f"pattern pruning uses the tri-design 4-of-9 patterns; got {kept} in {text!r}")
            return Pattern3x3(_ratio(sparsity, text), scope=scope[0] if scope else "global")
        case "channel", [sparsity]:
            return Channel(_ratio(sparsity, text))
        case "zograsp", [sparsity]:
            return ZOGrasp(_ratio(sparsity, text))
    raise UsageError(f"prune spec {text!r} does not read as {FORMS[method]}")


def parse_pattern(label: str, density: float) -> Method:
    """The record behind an annotation's pattern label, its sparsity taken from the measured `density`.

    The label carries the structure only, so `unstructured` may have been ZO-GraSP and `layer`
    scope is not recorded: what the kernels and the simulator need (block shape, N and M, pattern,
    channels) is. ``block:S:RxC``, the SPEC spelling, is read as ``block:RxC``: some annotations
    store it. A label outside this list is a broken file, not a command-line mistake.
    """
    sparsity = 1.0 - density
    match label.split(":"):
        case ["dense"]:
            return NoSparsity()
        case ["unstructured"]:
            return Unstructured(sparsity)
        case ["block", shape] | ["block", _, shape] if (found := _SHAPE.fullmatch(shape)):
            rows, cols = int(found[1]), int(found[2])
            if rows and cols:
                return Block(sparsity, rows, cols)
        case ["nm", n, m] if _INT.fullmatch(n) and _INT.fullmatch(m) and 1 <= int(n) <= int(m):
            return NM(int(n), int(m))
        case ["pattern3x3", "4of9"]:
            return Pattern3x3(sparsity)
        case ["channel"]:
            return Channel(sparsity)
        case ["channel", "zeroed"]:
            return Channel(sparsity, zeroed=True)
    raise TridesignError(
        f"unknown sparsity pattern {label!r} in a weight-sparsity annotation; known: dense, unstructured, "
        "block:RxC, nm:N:M, pattern3x3:4of9, channel, channel:zeroed"
    )


def check_min_density(value: object, where: str = "--min-density") -> float:
    """`value` as a per-layer floor in [0, 1); anything else is a one-line UsageError."""
    try:
        floor = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be a number in [0, 1), not {value!r}") from None
    if not 0.0 <= floor < 1.0:
        raise UsageError(f"{where} {floor} must be in [0, 1) (the fraction of each layer's weights kept)")
    return floor


@dataclass(frozen=True)
class SparsityPlan:
    """Which method applies to which layer: ordered (glob, method) rules, first match wins, and a
    default. `source` is the YAML path as the user gave it, so a manifest names the file, not its
    expansion; a plan from one SPEC string prints as that method's canonical text. `min_density`
    is the per-layer floor (module docstring); 0 turns it off, and a layer then pruned to nothing
    is refused by the passes. A floor other than the default prints after the text."""

    default: Method
    rules: tuple[tuple[str, Method], ...] = ()
    source: str | None = None
    min_density: float = DEFAULT_MIN_DENSITY

    def __post_init__(self) -> None:
        check_min_density(self.min_density)
        methods = self.methods()
        if any(isinstance(m, Channel) for m in methods) and not all(isinstance(m, (Channel, NoSparsity)) for m in methods):
            raise UsageError("channel pruning cannot be mixed with other methods in one spec (run it first)")

    def for_layer(self, name: str) -> Method:
        for glob, method in self.rules:
            if fnmatch.fnmatchcase(name, glob):
                return method
        return self.default

    def methods(self) -> list[Method]:
        return [self.default, *(m for _, m in self.rules)]

    @property
    def text(self) -> str:
        return self.source if self.source is not None else self.default.text

    def __str__(self) -> str:
        """The text, with the floor when it is not the default: a manifest's options (and the
        config hash made from them) must tell two plans apart that prune differently."""
        if self.min_density == DEFAULT_MIN_DENSITY:
            return self.text
        return f"{self.text} min_density={_number(self.min_density)}"


def load_plan(spec: str | Path, min_density: float | None = None) -> SparsityPlan:
    """A SPEC string, or the path of a YAML file with per-layer rules (a Path, or a string ending in
    .yaml or .yml). `min_density` (the `--min-density` option) overrides the file's
    ``min_density``; without either the plan has DEFAULT_MIN_DENSITY."""
    if not isinstance(spec, Path) and not spec.endswith((".yaml", ".yml")):
        floor = DEFAULT_MIN_DENSITY if min_density is None else check_min_density(min_density)
        return SparsityPlan(parse_method(spec), min_density=floor)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"prune spec file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"prune spec file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict) or set(data) - {"default", "layers", "min_density"}:
        raise UsageError(f"prune spec file {path} may hold only 'default', 'layers' and 'min_density'")
    layers = data.get("layers") or {}
    if not isinstance(layers, dict):
        raise UsageError(f"'layers' in {path} must map layer-name globs to specs")
    rules = tuple((str(glob), parse_method(str(text))) for glob, text in layers.items())
    if min_density is not None:
        floor = check_min_density(min_density)
    elif "min_density" in data:
        floor = check_min_density(data["min_density"], f"'min_density' in {path}")
    else:
        floor = DEFAULT_MIN_DENSITY
    return SparsityPlan(parse_method(str(data.get("default", "none"))), rules, source=str(spec), min_density=floor)
