"""Atomic writes: nothing the toolchain produces is ever left half-written.

Files go to a temporary sibling and are renamed into place; artifact directories are built in a
temporary sibling directory and swapped in at the end. A failure or Ctrl-C leaves the previous state.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tridesign.errors import TridesignError


def check_writable_parent(path: Path) -> None:
    """Fail early, with one line, when `path` cannot be created (before any expensive work)."""
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise TridesignError(f"cannot write {path}: {parent} is not a directory")
    if not parent.is_dir():
        raise TridesignError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TridesignError(f"cannot write {path}: directory {parent} is not writable")


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of `path` for writing; rename it onto `path` only on success."""
    path = Path(path)
    check_writable_parent(path)
    fd, tmp = _os_call(tempfile.mkstemp, path, prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _os_call(func, path: Path, **kwargs):
    """Create the temporary sibling; permission bits, read-only mounts and full disks become one line."""
    try:
        return func(**kwargs)
    except OSError as err:
        raise TridesignError(f"cannot write {path}: {err.strerror}") from None


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling *path* for writers that take a file name (TVM's `write_to_file`,
    `onnx.save`); it is renamed onto `path` only when the block succeeds, and removed otherwise."""
    path = Path(path)
    check_writable_parent(path)
    fd, tmp = _os_call(tempfile.mkstemp, path, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.resolve().parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_dir(path: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` when the block succeeds.

    An existing `path` is replaced only if it holds the file `marker` (an artifact's manifest, a
    report's index), i.e. only if tridesign wrote it, so a typo in `-o` never deletes a user's
    unrelated directory.
    """
    path = Path(path)
    check_writable_parent(path)
    with _locked(path.resolve().parent):  # not while another writer swaps its directory in
        if path.exists() and not (path / marker).is_file():
            raise TridesignError(f"{path} exists and is not a tridesign artifact; choose another output path")
    tmp = Path(_os_call(tempfile.mkdtemp, path, prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent))
    old = tmp.with_suffix(".old")  # unique like `tmp`: two writers never move into one name
    try:
        yield tmp
        with _locked(path.resolve().parent):
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
    """Hold an flock on the lock file `path` (created if missing): exclusive for writers, `shared`
    for readers. Renames make single files atomic; a read-merge-write or a database other processes
    append to needs this. `on_wait` is called once if the lock is busy, before blocking on it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, mode)
        yield


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` itself (no lock file is left next to the user's output).

    Why: two processes writing one output at once (two `compile -o DIR`) each swap their directory
    in with two renames; unserialized, one saw DIR vanish or reappear between them and failed,
    leaving its aside copy behind. Where a directory cannot be opened or flocked (an unreadable
    parent, some NFS mounts) the swap goes on unlocked, as before.
    """
    fd = None
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock
