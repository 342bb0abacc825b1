"""The package layers of docs/architecture.md, checked on the source: no import circle anywhere in
`tridesign/` (lazy imports inside functions included), no import that runs upward across the
layers, and no torch on the device side. The layer table is read from the doc itself, so the doc
and the code cannot disagree silently.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tridesign"
DOC = ROOT / "docs" / "architecture.md"
# What runs where only an inference engine exists (and the contracts they share): never torch.
TORCH_FREE = ("deploy", "data", "zo", "kernels", "hwsim", "tracking", "board", "contracts")


def documented_layers() -> dict[str, int]:
    """{package or root module: layer} from the ```layers block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md has no ```layers block"
    layers: dict[str, int] = {}
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(\d+)\s+(.+)", line)
        if match:
            for name in re.split(r"[,\s]+", match.group(2).split("#")[0].strip()):
                if name:
                    layers[name] = int(match.group(1))
    return layers


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every tridesign module `name` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = {f"{module}.{alias.name}" for alias in node.names} & set(known)
            found |= submodules or {module}
    return {m for m in found if m in known and m != name}


def unit(module: str) -> str:
    """What a module's layer is looked up by: its package under tridesign/, or the root module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tridesign"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_package_and_root_module_has_a_documented_layer(graph) -> None:
    layers = documented_layers()
    missing = sorted({unit(m) for m in graph} - set(layers))
    assert not missing, f"add these to the layers block of docs/architecture.md: {missing}"


def test_no_import_circle(graph) -> None:
    """Tarjan's strongly connected components over the module graph: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_imports_run_downward_only(graph) -> None:
    """A module imports its own package or a lower layer, never a package beside it or above it;
    the contracts (layer 0) may use one another (the circle test keeps that one-way)."""
    layers = documented_layers()
    upward = []
    for module, deps in graph.items():
        mine = unit(module)
        for dep in deps:
            theirs = unit(dep)
            beside = layers[theirs] == layers[mine] and layers[mine] > 0
            if theirs != mine and (layers[theirs] > layers[mine] or beside):
                upward.append(f"{module} -> {dep} (layer {layers[mine]} -> {layers[theirs]})")
    assert not upward, "imports across or up the layers:\n" + "\n".join(sorted(upward))


def test_the_device_side_and_the_contracts_never_import_torch() -> None:
    layers = documented_layers()
    contracts = {name for name, layer in layers.items() if layer == 0}
    offenders = []
    for name, path in module_names().items():
        scope = "contracts" if unit(name) in contracts else unit(name)
        if scope not in TORCH_FREE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            roots = (
                [a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import)
                else [(node.module or "").split(".")[0]] if isinstance(node, ast.ImportFrom) else []
            )
            if "torch" in roots:
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"torch imported on the torch-free side: {offenders}"


def test_importing_the_compiler_and_the_zoo_does_not_import_torch() -> None:
    """torch is imported where a torch model is built or exported, not on import: with torch's ~770
    modules in sys.modules, TVMScript's parser (inspect.getmodule scans them per frame) took 3 s
    longer to build ResNet-20's convolutions."""
    code = "import sys, tridesign.compiler.pipeline, tridesign.cli.main, tridesign.models; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_board_runner_imports_nothing_of_tridesign(graph) -> None:
    """tridesign/board ships inside bundles as `tridesign_board`: only relative imports within it."""
    outside = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("tridesign.board") for d in deps
                     if not d.startswith("tridesign.board"))
    assert not outside, outside
    for path in (PACKAGE / "board").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert not (node.module or "").startswith("tridesign"), f"{path.name}: absolute import of {node.module}"
