"""TVM fixtures: one untuned host build of ResNet-20 (tiny), compiled once per session.

Every build points its tuning database at a fresh temporary directory, so a user's cache
(~/.cache/tridesign/tuning) can neither speed up nor change what the tests see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tridesign.compiler.backends.tvm import TvmBackend
from tridesign.compiler.options import CompileOptions


@pytest.fixture(scope="session")
def tvm_backend() -> TvmBackend:
    backend = TvmBackend()
    reason = backend.available()
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tuning-db")


@pytest.fixture(scope="session")
def tvm_resnet20(tvm_backend, resnet20_onnx, empty_db, tmp_path_factory):
    """(artifact dir, CompileResult) of resnet20 tiny built untuned for the host."""
    out = tmp_path_factory.mktemp("tvm-art")
    result = tvm_backend.compile(resnet20_onnx, out, CompileOptions(backend="tvm", tuning_db=empty_db))
    return out, result
