"""Backend registry: explicit, one file per backend (the CPU reference `ort` always exists)."""

from __future__ import annotations

from tridesign.compiler.backends.base import Backend
from tridesign.compiler.backends.ort import OrtBackend
from tridesign.compiler.backends.tvm import TvmBackend
from tridesign.errors import TridesignError, UsageError

BACKENDS: dict[str, Backend] = {"ort": OrtBackend(), "tvm": TvmBackend()}


def get_backend(name: str) -> Backend:
    """The named backend, with a one-line error when it is unknown or cannot run here."""
    try:
        backend = BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}") from None
    reason = backend.available()
    if reason:
        raise TridesignError(f"backend {name!r} is not available here: {reason}")
    return backend
