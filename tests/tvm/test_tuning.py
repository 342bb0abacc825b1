"""Tuning a conv + head: conv tiles and MetaSchedule records land in the database, compile applies them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tridesign.compiler import tuning
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.targets import get_target
from tridesign.kernels.conv_tiles import BOOK_FILE


def conv_head_model() -> onnx.ModelProto:
    """Conv+ReLU (the hand-written dense kernel) then pooling and a MatMul head (MetaSchedule's)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32), "conv/w")
    head = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "head/w")
    nodes = [
        helper.make_node("Conv", ["x", "conv/w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "head/w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w, head],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tune_then_compile_reuses_the_database(tvm_backend, tmp_path):
    model = conv_head_model()
    db = tmp_path / "db"
    report = tuning.tune_model(model, "host", 8, db_dir=db, quiet=True)
    assert report["records_added"] >= 1 and report["kernels_tuned"] >= 1
    assert report["dense_convs"] == 1 and report["dense_conv_shapes_measured"] == 1
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
    assert result.tuning["dense_convs"] == 1 and result.tuning["dense_conv_tiles_defaulted"] == 0
    assert not any("default register tile" in note for note in result.notes)
    # the tuned head reads its weight in a blocked layout, repacked at compile time: the module
    # still takes only x (below), and no per-call transform kernel is left in it
    assert result.tuning["kernels_with_repacked_weights"] >= 1
    assert "tuning/database_tuning_record.json" in result.files and (out / "tuning" / "database_tuning_record.json").is_file()
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    got = tvm_backend.load(out, {}).run({"x": x})["y"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_default_database_is_per_target(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    host, pi = tuning.default_db_dir(get_target("host")), tuning.default_db_dir(get_target("raspberry-pi-5"))
    assert host.parent == pi.parent == tmp_path / "tridesign" / "tuning" and host != pi
