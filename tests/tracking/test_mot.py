"""MOT files: what the reader accepts, what it refuses (one line naming file and line), and the
results writer."""

from __future__ import annotations

import pytest

from tridesign.data.video import SynthConfig, render, synthesize
from tridesign.errors import TridesignError, UsageError
from tridesign.tracking.mot import MotRow, read_mot, write_results

GT = "1,1,10,20,30,40,1,1,0.75\n1,2,100,20,30,40,0,7,0.1\n\n2,1,12,21,30,40,1,1,1.0\n"


def write(tmp_path, text: str, name: str = "gt.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_mot17_gt(tmp_path):
    rows = read_mot(write(tmp_path, GT))
    assert rows == [MotRow(1, 1, 10, 20, 30, 40, 1, 1, 0.75), MotRow(1, 2, 100, 20, 30, 40, 0, 7, 0.1),
                    MotRow(2, 1, 12, 21, 30, 40, 1, 1, 1.0)]


def test_reads_results_and_short_layouts(tmp_path):
    ten = read_mot(write(tmp_path, "3,4,1.5,2.5,10,20,0.9,-1,-1,-1\n"))
    assert ten == [MotRow(3, 4, 1.5, 2.5, 10, 20, 0.9, -1, -1.0)]  # 10 columns: world coords, no class
    assert read_mot(write(tmp_path, "1,1,0,0,5,5\n")) == [MotRow(1, 1, 0, 0, 5, 5)]


@pytest.mark.parametrize("text, message", [
    ("", "has no rows"),
    ("\n  \n", "has no rows"),
    ("1,1,10,20,30\n", ":1: not a MOT file: 5 columns"),
    ("1,1,10,20,30,40,1,1,1,1,1\n", ":1: not a MOT file: 11 columns"),
    ("1,1,10,20,30,40,1,1,1\n2,1,10,20,30,40\n", ":2: 6 columns where the first line has 9"),
    ("1,1,10,20,30,40,1,1,1\n2,x,10,20,30,40,1,1,1\n", ":2: not a number: 'x'"),
    ("frame,id,left,top,width,height\n", ":1: not a number: 'frame'"),
    ("0,1,10,20,30,40,1,1,1\n", ":1: frame must be an integer >= 1"),
    ("1.5,1,10,20,30,40,1,1,1\n", ":1: frame must be an integer >= 1"),
    ("1,0,10,20,30,40,1,1,1\n", ":1: id must be an integer >= 1"),
    ("1,1,10,20,-3,40,1,1,1\n", ":1: width and height must not be negative"),
    ("1,1,10,20,30,nan,1,1,1\n", ":1: values must be finite"),
    ("1,1,10,20,30,40\n1,1,11,20,30,40\n", ":2: id 1 appears twice in frame 1"),
])
def test_refuses_non_mot(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(TridesignError) as err:
        read_mot(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_refuses_missing_binary_and_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_mot(tmp_path / "nope.txt")
    with pytest.raises(UsageError, match="is not a file"):
        read_mot(tmp_path)
    binary = tmp_path / "video.mp4"
    binary.write_bytes(b"\x00\x00\x00\x18ftypmp42\xff\xfe")
    with pytest.raises(TridesignError, match="is not text"):
        read_mot(binary)


def test_results_round_trip_sorted_and_atomic(tmp_path):
    rows = [MotRow.from_xyxy(2, 1, (9.0, 19.0, 39.0, 59.0), 0.9), MotRow.from_xyxy(1, 2, (0.0, 0.0, 10.0, 5.0), 0.5),
            MotRow.from_xyxy(1, 1, (3.25, 4.5, 8.0, 9.0), 0.875)]
    path = tmp_path / "results.txt"
    write_results(path, rows)
    lines = path.read_text().splitlines()
    assert lines == ["1,1,4.25,5.50,4.75,4.50,0.8750,-1,-1,-1", "1,2,1.00,1.00,10.00,5.00,0.5000,-1,-1,-1",
                     "2,1,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1"]
    back = read_mot(path)
    assert [r.xyxy() for r in back] == [(3.25, 4.5, 8.0, 9.0), (0.0, 0.0, 10.0, 5.0), (9.0, 19.0, 39.0, 59.0)]
    assert [p.name for p in tmp_path.iterdir()] == ["results.txt"]  # no temporary sibling left


def test_results_writer_refuses_missing_directory(tmp_path):
    with pytest.raises(TridesignError, match="does not exist"):
        write_results(tmp_path / "missing" / "results.txt", [MotRow(1, 1, 1, 1, 2, 2)])


def test_reads_the_synthetic_videos_gt(tmp_path):
    cfg = SynthConfig(frames=12, objects=3, width=160, height=96)
    synthesize(cfg, tmp_path / "videos")
    rows = read_mot(tmp_path / "videos" / "synth-0001" / "gt" / "gt.txt")
    truth = [t for _, frame_rows in render(cfg, 0) for t in frame_rows]
    assert [(r.frame, r.ident, r.left, r.top, r.width, r.height, r.conf, r.cls) for r in rows] == [
        (t.frame, t.ident, t.left, t.top, t.width, t.height, 1.0, 1) for t in truth]
    assert [r.visibility for r in rows] == pytest.approx([t.visibility for t in truth], abs=1e-6)
