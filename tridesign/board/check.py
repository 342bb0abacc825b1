"""A bundle is checked before anything in it is loaded: every member's path, size and sha256.

`bundle.json` lists every file of the bundle with its size and sha256. An archive is opened member
by member: its `bundle.json` is read first, then each member must be a regular file (or a folder)
with a relative path that stays inside the destination, listed in bundle.json, of the listed size;
only then is it written, into a destination the caller made (a temporary folder), and hashed.
Nothing is unpickled (arrays are read with `allow_pickle=False`). Standard library and numpy only.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

BUNDLE_FILE = "bundle.json"
FORMAT = "tridesign-bundle/1"
# Written by Python when the board runner is imported from inside a bundle folder; never listed.
IGNORED = ("__pycache__",)


class BoardError(Exception):
    """A bundle that must not be run, or an input it cannot take: one line, said to the user."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_meta(text: bytes | str, where: str) -> dict[str, Any]:
    """bundle.json's content, checked for the keys the runner relies on."""
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BoardError(f"{where}: {BUNDLE_FILE} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BoardError(f"{where}: {BUNDLE_FILE} is not a {FORMAT} manifest")
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) and {"sha256", "bytes"} <= set(v) for v in files.values()):
        raise BoardError(f"{where}: {BUNDLE_FILE} has no valid 'files' table")
    for name in files:
        safe_member_path(name, where)
    return meta


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays from an .npz, never unpickling objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError) as err:
        raise BoardError(f"{path} is not a readable .npz file ({err})") from None


def safe_member_path(name: str, where: str) -> PurePosixPath:
    """A relative path without '..' that stays inside the bundle, or a one-line refusal."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name.startswith("\\") or ":" in path.parts[0]:
        raise BoardError(f"{where}: member {name!r} points outside the bundle")
    return path


def verify_dir(root: Path) -> dict[str, Any]:
    """Check an unpacked bundle folder against its bundle.json; return the manifest."""
    root = Path(root)
    meta_path = root / BUNDLE_FILE
    if not meta_path.is_file():
        raise BoardError(f"{root}: no {BUNDLE_FILE}; not a tridesign bundle")
    meta = parse_meta(meta_path.read_bytes(), str(root))
    for name, entry in meta["files"].items():
        path = root / name
        if path.is_symlink() or not path.is_file():
            raise BoardError(f"{root}: {name} is missing or not a regular file")
        if path.stat().st_size != entry["bytes"]:
            raise BoardError(f"{root}: {name} has {path.stat().st_size} bytes, bundle.json says {entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            raise BoardError(f"{root}: {name} does not match its sha256 in bundle.json (changed or corrupt)")
    listed = set(meta["files"]) | {BUNDLE_FILE}
    extra = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if not p.is_dir() and str(p.relative_to(root)) not in listed and not set(p.relative_to(root).parts) & set(IGNORED)
    )
    if extra:
        raise BoardError(f"{root}: {extra[0]} is not listed in bundle.json")
    return meta


def extract(archive: Path, dest: Path) -> dict[str, Any]:
    """Unpack a bundle archive into the empty folder `dest`, member by member, checking each
    member's path, kind, listing and size against bundle.json before it is written; return the
    manifest. The sha256 of every file is the runner's check (`verify_dir`), done once, before it
    loads anything."""
    archive, dest = Path(archive), Path(dest)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise BoardError(f"{archive}: not a readable bundle archive ({str(err).splitlines()[0]})") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise BoardError(f"{archive}: truncated or corrupt archive ({str(err).splitlines()[0]})") from None
        by_name = {m.name.removeprefix("./"): m for m in members}
        if BUNDLE_FILE not in by_name or not by_name[BUNDLE_FILE].isfile():
            raise BoardError(f"{archive}: no {BUNDLE_FILE}; not a tridesign bundle")
        meta = parse_meta(_read(tar, by_name[BUNDLE_FILE], archive), str(archive))
        for name, member in by_name.items():
            safe_member_path(name, str(archive))
            if member.isdir():
                continue
            if not member.isfile():
                raise BoardError(f"{archive}: member {name!r} is a link or device; bundles hold regular files only")
            if name != BUNDLE_FILE and name not in meta["files"]:
                raise BoardError(f"{archive}: member {name!r} is not listed in bundle.json")
            if name != BUNDLE_FILE and member.size != meta["files"][name]["bytes"]:
                raise BoardError(f"{archive}: member {name!r} has {member.size} bytes, bundle.json says {meta['files'][name]['bytes']}")
            target = dest.joinpath(*PurePosixPath(name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_read(tar, member, archive))
    return meta


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> bytes:
    try:
        handle = tar.extractfile(member)
        return handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError) as err:
        raise BoardError(f"{archive}: truncated or corrupt archive at {member.name!r} ({str(err).splitlines()[0]})") from None
