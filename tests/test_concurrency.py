"""Two processes writing into the same places at once: both succeed, nothing is left half-done.

Covered: two `tridesign compile` runs into sibling directories (artifacts are built in unique
temporary siblings and renamed), writers racing to replace one output directory (`atomic_dir`
swaps under a lock on the parent directory), and two processes asking `cached_artifact` for the
same key (one compiles under the key's lock, the other waits and reuses it). Not covered here: two
processes training the digits weights (`load_trained_resnet20` with no cached file), since one
training takes about a minute on 2 cores; each writes through a temporary file and a rename.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_reproducibility import artifact_differences

REPO = Path(__file__).resolve().parents[1]

# Imports first, then waits for the go file, so both processes call cached_artifact at the same moment.
CACHED = """
import sys, time
from pathlib import Path
from tridesign.compiler.artifact_cache import cached_artifact
from tridesign.compiler.options import CompileOptions
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.01)
print(cached_artifact("resnet20", CompileOptions(backend="ort", config="tiny")))
"""

# Replaces one directory over and over; each version holds two files written by the same writer.
SWAPPER = """
import os, sys
from pathlib import Path
from tridesign.atomic import atomic_dir
for i in range(int(sys.argv[2])):
    with atomic_dir(Path(sys.argv[1]) / "out", "marker") as tmp:
        (tmp / "data").write_text(f"{os.getpid()}-{i}" * 1000)
        (tmp / "marker").write_text(f"{os.getpid()}-{i}")
"""


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[str, str]]:
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err
    return outs


def test_two_compiles_at_once_into_sibling_directories(tmp_path):
    env = dict(os.environ, COLUMNS="200")
    procs = [_start(["-m", "tridesign", "compile", "resnet20", "--config", "tiny", "-o", str(tmp_path / f"art{i}")], env)
             for i in (1, 2)]
    _finish(procs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art1", "art2"]  # no temporary sibling left
    assert artifact_differences(tmp_path / "art1", tmp_path / "art2") == []


def test_writers_racing_to_replace_one_directory_all_succeed(tmp_path):
    procs = [_start(["-c", SWAPPER, str(tmp_path), "150"], dict(os.environ)) for _ in range(3)]
    _finish(procs)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or set-aside copy left
    marker = (tmp_path / "out" / "marker").read_text()
    assert (tmp_path / "out" / "data").read_text() == marker * 1000  # one writer's complete version


def test_two_processes_fill_one_cache_entry_once(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), COLUMNS="200")
    go = tmp_path / "go"
    procs = [_start(["-c", CACHED, str(go)], env) for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    go.touch()
    outs = _finish(procs)
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    entry = Path(paths.pop())
    compiled = [err for _, err in outs if "compiling resnet20" in err]
    assert len(compiled) == 1, outs  # the other process waited on the lock and reused the entry
    # exactly one complete entry and its lock file: no temporary or replaced directory left over
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted([entry.name, f".{entry.name}.lock"])
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["verification"]["passed"]
    assert sorted(manifest["files"]) == sorted(p.name for p in entry.iterdir())
