"""Tuning a conv + head: conv tiles and MetaSchedule records land in the database, compile applies them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from tridesign.compiler.tvm import tuning
from tridesign.compiler.options import CompileOptions
from tridesign.targets import get_target
from tridesign.kernels.conv_tiles import BOOK_FILE


def test_tune_then_compile_reuses_the_database(tvm_backend, tmp_path, conv_head):
    model = conv_head
    db = tmp_path / "db"
    report = tuning.tune_model(model, "host", 8, db_dir=db, quiet=True)
    assert report["records_added"] >= 1 and report["kernels_tuned"] >= 1
    assert report["dense_convs"] == 1 and report["dense_conv_shapes_measured"] == 1 and report["max_pools"] == 1
    # the pruned Gemm goes to its sparse kernel before MetaSchedule sees the module, in tune as in
    # compile: MetaSchedule's records are keyed by the kernels that remain
    assert report["sparse_kernel_layers"] == 1
    records = (db / "database_tuning_record.json").read_text().splitlines()
    assert len(records) == report["records_added"]  # appended as measured: what survives an interrupt
    assert all(len(json.loads(line)[1][1]) >= 1 for line in records)  # each record holds run times
    assert len(json.loads((db / BOOK_FILE).read_text())) == 1  # the conv layer's measured tile

    path = tmp_path / "conv_head.onnx"
    onnx.save(model, path)
    out = tmp_path / "art"
    out.mkdir()
    result = tvm_backend.compile(path, out, CompileOptions(backend="tvm", tuning_db=db))
    assert result.tuned and result.tuning["kernels_tuned"] >= 1
    assert [layer["weight"] for layer in result.sparse_layers if layer["sparse"]] == ["fc/w"]
    assert (result.tuning["kernels"], result.tuning["kernels_tuned"]) == (report["kernels"], report["kernels_tuned"])
    assert result.tuning["dense_convs"] == 1 and result.tuning["dense_conv_tiles_defaulted"] == 0
    assert not any("default register tile" in note for note in result.notes)
    # the tuned head reads its weight in a blocked layout, repacked at compile time: the module
    # still takes only x (below), and no per-call transform kernel is left in it
    assert result.tuning["kernels_with_repacked_weights"] >= 1
    assert "tuning/database_tuning_record.json" in result.files and (out / "tuning" / "database_tuning_record.json").is_file()
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    got = tvm_backend.load(out).run({"x": x})["y"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_default_database_is_per_target(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    host, pi = tuning.default_db_dir(get_target("host")), tuning.default_db_dir(get_target("raspberry-pi-5"))
    assert host.parent == pi.parent == tmp_path / "tridesign" / "tuning" and host != pi

