"""`--input-shape` for a user's ONNX with symbolic dims, and `tridesign inspect` (issue 20, item 2).

The model is what users bring from other exporters: [N, 3, H, W] -> Conv -> GlobalAveragePool,
every size but the channels left symbolic.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tridesign.compiler import onnx_io
from tridesign.compiler.options import CompileOptions, input_shapes_option
from tridesign.compiler.pipeline import options_hash
from tridesign.errors import UsageError


def symbolic_conv(second_input: bool = False) -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv(4, 3x3, pad 1) -> Relu -> GlobalAveragePool -> y [N, 4, 1, 1];
    with `second_input`, a bias b [N, 4, 1, 1] added at the end (sharing the symbol N)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32) / 5, "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p" if second_input else "y"], name="pool"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    if second_input:
        nodes.append(helper.make_node("Add", ["p", "b"], ["y"], name="bias"))
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4, 1, 1]))
    graph = helper.make_graph(nodes, "sym", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 1, 1])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def sym_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("sym") / "sym.onnx"
    onnx.save(symbolic_conv(), str(path))
    return path


def one_line_error(done, code: int = 2) -> str:
    """The error line of a refused command: its last line on stderr (progress lines may precede it)."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and lines[-1].startswith("tridesign: error: "), done.stderr
    assert not any(line.startswith("tridesign: error") for line in lines[:-1]), done.stderr
    return lines[-1]


# --- the parser -------------------------------------------------------------------------------

names = st.text(st.characters(codec="ascii", categories=("L", "N"), include_characters="/:._-="), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and not s.startswith("=")
)
shapes = st.lists(st.integers(1, 4096), min_size=1, max_size=6)


@given(st.dictionaries(names, shapes, min_size=1, max_size=4))
def test_valid_items_parse_back_to_what_was_written(expected):
    """Names keep '/', ':' and '=' (the name is everything before the last '=')."""
    items = [f"{name}={'x'.join(map(str, dims))}" for name, dims in expected.items()]
    assert onnx_io.parse_input_shapes(items) == expected


bad_dims = st.sampled_from(["0", "-3", "3.5", "H", "", " ", "1e3", "0x10", "²", "+4"])


@given(shapes, bad_dims, st.integers(0, 6))
def test_every_malformed_dim_is_one_usage_line(dims, bad, at):
    tokens = [str(d) for d in dims]
    tokens.insert(min(at, len(tokens)), bad)
    with pytest.raises(UsageError, match="dims must be positive integers") as info:
        onnx_io.parse_input_shapes([f"x={'x'.join(tokens)}"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("items, message", [
    (["x"], "expected NAME=DIMS"),
    (["1x3x224x224"], "expected NAME=DIMS"),
    (["=1x3"], "name before '=' is empty"),
    (["  =1x3"], "name before '=' is empty"),
    (["x=1,3,224,224"], "positive integers"),
    (["x=1x3", "y=2", "x=1x3"], "gives input 'x' twice"),
])
def test_malformed_items_are_refused_in_one_line(items, message):
    with pytest.raises(UsageError, match=message) as info:
        onnx_io.parse_input_shapes(items)
    assert "\n" not in str(info.value)


def test_input_shapes_enter_the_options_hash():
    """A new option field must change the cache key, or a cached artifact of other shapes is reused."""
    fixed = CompileOptions(input_shapes=input_shapes_option({"x": [1, 3, 32, 32]}))
    assert hash(fixed) == hash(CompileOptions(input_shapes=(("x", (1, 3, 32, 32)),)))
    assert options_hash(fixed) != options_hash(CompileOptions())
    assert options_hash(fixed) != options_hash(CompileOptions(input_shapes=input_shapes_option({"x": [1, 3, 64, 64]})))


# --- fixing a graph's input dims -------------------------------------------------------------

def test_fixed_shapes_reach_every_tensor_after_normalize():
    model = onnx_io.normalize(symbolic_conv(), {"x": [2, 3, 32, 48]})
    sig = onnx_io.io_signature(model)
    assert sig["inputs"][0]["shape"] == [2, 3, 32, 48]
    assert sig["outputs"][0]["shape"] == [2, 4, 1, 1]
    assert onnx_io.symbolic_dims(model) == {}
    conv_out = next(v for v in model.graph.value_info if v.name == "c")
    assert [d.dim_value for d in conv_out.type.tensor_type.shape.dim] == [2, 4, 32, 48]


def test_a_symbol_fixed_on_one_input_fixes_it_on_the_others():
    model = onnx_io.fix_input_shapes(symbolic_conv(second_input=True), {"x": [3, 3, 8, 8]})
    assert onnx_io.io_signature(model)["inputs"][1]["shape"] == [3, 4, 1, 1]
    with pytest.raises(UsageError, match="symbolic dim 'N' is 3 at input 'x' axis 0 but 2 at input 'b' axis 0"):
        onnx_io.fix_input_shapes(symbolic_conv(second_input=True), {"x": [3, 3, 8, 8], "b": [2, 4, 1, 1]})


@pytest.mark.parametrize("shapes, message", [
    ({"y": [1, 3, 8, 8]}, "the model has no input 'y'; its inputs are 'x'"),
    ({"x": [1, 3, 8]}, "input 'x' has shape Nx3xHxW, given 1x3x8"),
    ({"x": [1, 4, 8, 8]}, "input 'x' has shape Nx3xHxW, given 1x4x8x8"),
])
def test_shapes_the_graph_cannot_take_are_refused(shapes, message):
    model = symbolic_conv()
    with pytest.raises(UsageError, match=message) as info:
        onnx_io.fix_input_shapes(model, shapes)
    assert "\n" not in str(info.value)
    assert onnx_io.io_signature(model)["inputs"][0]["shape"] == ["N", 3, "H", "W"]  # the caller's model is untouched


# --- the commands ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tvm_fixed(sym_onnx, tmp_path_factory):
    """The TVM artifact of the symbolic model at x=1x3x32x32 (the CLI's wiring is the ORT test's)."""
    from tridesign.compiler.pipeline import compile_artifact

    out = tmp_path_factory.mktemp("tvm") / "art"
    options = CompileOptions(backend="tvm", input_shapes=input_shapes_option({"x": [1, 3, 32, 32]}))
    return out, compile_artifact(str(sym_onnx), options, out)


def test_tvm_compiles_a_symbolic_spatial_model_at_the_given_shape(tvm_fixed):
    out, manifest = tvm_fixed
    assert [(t.name, t.shape) for t in manifest.inputs] == [("x", [1, 3, 32, 32])]
    assert manifest.options["input_shapes"] == ["x=1x3x32x32"]
    assert manifest.verification.passed is True
    assert np.load(out / "inputs.npz")["x"].shape == (1, 3, 32, 32)


def test_ort_compiles_at_the_given_shape_and_notes_nothing(cli, sym_onnx, tmp_path):
    done = cli("compile", str(sym_onnx), "--input-shape", "x=2x3x16x24", "-o", str(tmp_path / "a"), "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["inputs"][0]["shape"] == [2, 3, 16, 24] and manifest["outputs"][0]["shape"] == [2, 4, 1, 1]
    assert "note:" not in done.stderr


def test_a_compile_that_sizes_symbolic_dims_says_which_and_to_what(cli, sym_onnx, tmp_path):
    done = cli("compile", str(sym_onnx), "--batch", "2", "-o", str(tmp_path / "a"), "--json")
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: input 'x' Nx3xHxW: symbolic dims fixed to N=2 (axis 0, --batch), H=1 (axis 2), W=1 (axis 3) "
        "in the example inputs; set them with --input-shape x=DIMS"
    ]
    assert json.loads(done.stdout)["inputs"][0]["shape"] == ["N", 3, "H", "W"]  # ORT keeps the graph dynamic


@pytest.mark.parametrize("args, message", [
    (["--backend", "tvm"], "input 'x' Nx3xHxW has symbolic dims H (axis 2), W (axis 3); the TVM backend needs fixed shapes: give --input-shape x=DIMS"),
    (["--input-shape", "img=1x3x8x8"], "the model has no input 'img'; its inputs are 'x'"),
    (["--input-shape", "x=3x8x8"], "input 'x' has shape Nx3xHxW, given 3x8x8"),
    (["--input-shape", "x=1x3x8x0"], "dims must be positive integers"),
])
def test_compile_refusals_are_one_line(cli, sym_onnx, tmp_path, args, message):
    assert message in one_line_error(cli("compile", str(sym_onnx), *args, "-o", str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("command", ["compile", "simulate"])
def test_a_registered_model_refuses_input_shapes(cli, tmp_path, command):
    args = ["-o", str(tmp_path / "a")] if command == "compile" else []
    done = cli(command, "resnet20", "--config", "tiny", "--input-shape", "input=1x3x64x64", *args)
    assert "--input-shape is for .onnx files: resnet20's config (tiny) fixes its input shapes" in one_line_error(done)


def test_run_refuses_inputs_of_another_shape_than_built_for(cli, tvm_fixed, tmp_path):
    out, _ = tvm_fixed
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 3, 16, 16), np.float32))
    done = cli("run", str(out), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"))
    assert "input 'x' has shape [1, 3, 16, 16], expected [1, 3, 32, 32]" in one_line_error(done)
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 3, 32, 32), np.float32))
    assert cli("run", str(out), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz")).returncode == 0


def test_simulate_counts_the_given_shape_instead_of_ones(cli, sym_onnx):
    def conv_macs(*args: str) -> tuple[int, str]:
        done = cli("simulate", str(sym_onnx), "--json", *args)
        assert done.returncode == 0, done.stderr
        return next(layer["macs"] for layer in json.loads(done.stdout)["layers"] if layer["op_type"] == "Conv"), done.stderr

    macs, stderr = conv_macs()
    assert macs == 4 * 27 and "symbolic dims N (axis 0), H (axis 2), W (axis 3) counted as 1" in stderr
    macs, stderr = conv_macs("--input-shape", "x=1x3x32x32")
    assert macs == 32 * 32 * 4 * 27 and "counted as 1" not in stderr


# --- inspect ---------------------------------------------------------------------------------

def test_inspect_json_lists_what_a_compile_needs(cli, tmp_path):
    path = tmp_path / "two.onnx"
    model = symbolic_conv(second_input=True)
    model.producer_name = "pytest"
    onnx.save(model, str(path))
    done = cli("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ir_version"] == model.ir_version and report["producer"] == "pytest"
    assert report["opset_imports"] == [{"domain": "ai.onnx", "version": 17}]
    assert report["inputs"] == [
        {"name": "x", "shape": ["N", 3, "H", "W"], "dtype": "float32"},
        {"name": "b", "shape": ["N", 4, 1, 1], "dtype": "float32"},
    ]
    assert report["outputs"] == [{"name": "y", "shape": ["N", 4, 1, 1], "dtype": "float32"}]
    assert report["ops"] == {"Add": 1, "Conv": 1, "GlobalAveragePool": 1, "Relu": 1} and report["nodes"] == 4
    assert report["parameters"] == 108 and report["parameter_bytes"] == 432
    assert report["symbolic_dims"] == [
        {"name": "N", "occurs": [{"tensor": "x", "io": "input", "axis": 0}, {"tensor": "b", "io": "input", "axis": 0},
                                 {"tensor": "y", "io": "output", "axis": 0}]},
        {"name": "H", "occurs": [{"tensor": "x", "io": "input", "axis": 2}]},
        {"name": "W", "occurs": [{"tensor": "x", "io": "input", "axis": 3}]},
    ]
    table = cli("inspect", str(path))
    assert table.returncode == 0 and "Nx3xHxW" in table.stdout and "symbolic dims" in table.stdout


@pytest.mark.parametrize("payload, message", [(None, "no such file"), (b"garbage", "not a readable ONNX model")])
def test_inspect_of_a_bad_file_is_one_line(cli, tmp_path, payload, message):
    path = tmp_path / "bad.onnx"
    if payload is not None:
        path.write_bytes(payload)
    assert message in one_line_error(cli("inspect", str(path)), code=1)
