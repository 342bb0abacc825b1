"""The user's own data in `compile --calibration/--verify-inputs` (compiler.user_data): int8 scales
calibrated on it rather than on noise, the artifact verified on it, `--preprocess` images, and
one-line refusals for data that does not fit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tridesign.artifact import MODEL_FILE, load_manifest
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.passes import RANDOM_CALIBRATION, RANDOM_CALIBRATION_NOTE
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.user_data import Preprocess, UserInputs, images_to_input, load_user_data, parse_preprocess
from tridesign.errors import UsageError

SIZE = 8
INT8 = CompileOptions(backend="ort", quantize="int8")
SPEC = {"name": "image", "shape": ["N", 3, SIZE, SIZE], "dtype": "float32"}


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> Path:
    """image (N, 3, 8, 8) -> Conv 3x3 -> Relu -> out (N, 4, 8, 8)."""
    path = tmp_path_factory.mktemp("user") / "conv.onnx"
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"), helper.make_node("Relu", ["c"], ["out"])],
        "conv", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, SIZE, SIZE])], [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def input_scale(artifact: Path) -> float:
    """The scale of the QuantizeLinear on the graph input: what calibration measured."""
    model = onnx.load(str(artifact / MODEL_FILE))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    return float(inits[node.input[1]])


def write_images(directory: Path, count: int = 5, size: tuple[int, int] = (20, 30)) -> Path:
    directory.mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        cv2.imwrite(str(directory / f"{i:03d}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return directory


def test_calibration_data_sets_int8_scales(conv: Path, tmp_path: Path) -> None:
    random = compile_artifact(str(conv), INT8, tmp_path / "random")
    assert random.quantization["calibration_data"] == RANDOM_CALIBRATION
    assert RANDOM_CALIBRATION_NOTE in random.notes
    # inputs in [0, 0.1): a tenth-or-less of the noise's range, so the input scale must shrink
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).uniform(0, 0.1, (10, 3, SIZE, SIZE)).astype(np.float32))
    user = compile_artifact(str(conv), INT8, tmp_path / "npz", user=UserInputs(calibration=str(tmp_path / "calib.npz")))
    assert "calib.npz (10 rows)" in user.quantization["calibration_data"]
    assert user.quantization["calibration_batches"] == 10
    assert RANDOM_CALIBRATION_NOTE not in user.notes
    assert input_scale(tmp_path / "npz") < input_scale(tmp_path / "random") / 5
    images = write_images(tmp_path / "images")
    from_images = compile_artifact(str(conv), INT8, tmp_path / "img", user=UserInputs(calibration=str(images)))
    assert "(5 images)" in from_images.quantization["calibration_data"]
    # pixels scaled to [0, 1] with mean 0, std 1 (area-resized, so averaged): within [0, 1], above the .npz's 0.1
    assert input_scale(tmp_path / "npz") < input_scale(tmp_path / "img") <= 1 / 255 + 1e-7


def test_verify_inputs_recorded(conv: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "v.npz", image=np.random.default_rng(2).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32))
    manifest = compile_artifact(str(conv), CompileOptions(backend="ort", batch=2), tmp_path / "a",
                                user=UserInputs(verify=str(tmp_path / "v.npz")))
    record = manifest.verification.user_inputs
    assert record["samples"] == 3 and record["batches"] == 2 and record["passed"] is True
    assert load_manifest(tmp_path / "a").verification.user_inputs == record


def test_images_to_input_preprocess() -> None:
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    pre = parse_preprocess("size=8x8,mean=0.5,0.5,0.5,std=0.5,0.5,0.5,order=rgb,layout=nhwc")
    assert pre == Preprocess((8, 8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "rgb", "nhwc")
    rows = images_to_input([frame], {"name": "image", "shape": ["N", SIZE, SIZE, 3], "dtype": "float32"}, pre, "here")
    assert rows.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_allclose(rows[0, 0, 0], [-1, -1, 1])  # rgb: blue last, normalized to [-1, 1]
    nchw = images_to_input([frame], SPEC, parse_preprocess("order=bgr"), "here")
    assert nchw.shape == (1, 3, SIZE, SIZE) and nchw[0, 0].min() == 1.0 and nchw[0, 2].max() == 0.0


@pytest.mark.parametrize(("text", "message"), [
    ("size=8", "give HxW"),
    ("mean=a", "give numbers"),
    ("order=rgba", "choose one of: rgb, bgr"),
    ("scale=2", "unknown key 'scale'"),
    ("size=8x8,size=8x8", "size given twice"),
])
def test_preprocess_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_preprocess(text)


def test_load_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", other=np.zeros((2, 3, SIZE, SIZE), np.float32))
    with pytest.raises(UsageError, match="needs an array per input"):
        load_user_data(tmp_path / "wrong.npz", [SPEC], None, "--calibration")
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(UsageError, match=r"have shape \[3, 4, 4\]"):
        load_user_data(tmp_path / "shape.npz", [SPEC], None, "--calibration")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3, SIZE, SIZE), np.float32))
    with pytest.raises(UsageError, match="no samples"):
        load_user_data(tmp_path / "empty.npz", [SPEC], None, "--calibration")
    np.savez(tmp_path / "ints.npz", x=np.zeros((2, 3, SIZE, SIZE), np.int64))
    with pytest.raises(UsageError, match="is int64, the model takes float32"):
        load_user_data(tmp_path / "ints.npz", [SPEC], None, "--calibration")
    images = write_images(tmp_path / "images", count=1)
    two = [SPEC, {**SPEC, "name": "other"}]
    with pytest.raises(UsageError, match="images feed a graph with one input"):
        load_user_data(images, two, None, "--calibration")
    with pytest.raises(UsageError, match="takes height 8"):
        load_user_data(images, [SPEC], parse_preprocess("size=16x16"), "--calibration")


def test_cli_refusals(cli, conv: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 3, SIZE, SIZE), np.float32))
    without_int8 = cli("compile", str(conv), "-o", str(tmp_path / "a"), "--calibration", str(tmp_path / "c.npz"))
    assert without_int8.returncode == 2 and "give --quantize int8 too" in without_int8.stderr
    assert len(without_int8.stderr.strip().splitlines()) == 1
    np.savez(tmp_path / "bad.npz", image=np.zeros((2, 3, 4, 4), np.float32))
    bad = cli("compile", str(conv), "-o", str(tmp_path / "b"), "--verify-inputs", str(tmp_path / "bad.npz"))
    assert bad.returncode == 2 and "--verify-inputs" in bad.stderr and "the model takes" in bad.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
