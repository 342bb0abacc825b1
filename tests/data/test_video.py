"""Synthetic evaluation video (`tridesign videos synth`) and the frame reader."""

from __future__ import annotations

import configparser
import dataclasses
import json
import time

import cv2
import numpy as np
import pytest

from tridesign.data.frames import read_frames
from tridesign.data.video import MARKER, SynthConfig, render, synthesize
from tridesign.errors import TridesignError, UsageError

@pytest.fixture
def videos_cli(cli):
    return lambda *args: cli("videos", *args)


def load_gt(path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("videos") / "synth"
    start = time.perf_counter()
    summary = synthesize(SynthConfig(), out)
    return out, summary, time.perf_counter() - start


def overlap(a, b) -> bool:
    return a[2] < b[2] + b[4] and b[2] < a[2] + a[4] and a[3] < b[3] + b[5] and b[3] < a[3] + a[5]


def test_layout_and_gt_format(default_run):
    out, summary, seconds = default_run
    assert seconds < 10
    assert json.loads((out / MARKER).read_text())["sequences"] == summary["sequences"]
    seq = out / "synth-0001"
    ini = configparser.ConfigParser()
    ini.optionxform = str
    ini.read(seq / "seqinfo.ini")
    info = ini["Sequence"]
    assert (info["name"], info["frameRate"], info["seqLength"], info["imWidth"], info["imHeight"], info["imExt"]) == (
        "synth-0001", "30", "120", "640", "360", ".jpg")
    assert (seq / info["video"]).is_file()
    gt = load_gt(seq / "gt" / "gt.txt")
    assert gt.shape[1] == 9 and len(gt) == summary["sequences"][0]["gt_rows"] > 100
    frame, ident, left, top, w, h, conf, cls, vis = gt.T
    assert np.all(frame == np.round(frame)) and frame.min() >= 1 and frame.max() <= 120
    assert np.all(conf == 1) and np.all(cls == 1)
    assert np.all((vis > 0) & (vis <= 1))
    assert np.all(w > 0) and np.all(h > 0)
    assert left.min() >= 1 and top.min() >= 1 and (left + w - 1).max() <= 640 and (top + h - 1).max() <= 360
    assert len(np.unique(gt[:, :2], axis=0)) == len(gt)  # one row per (frame, id)
    assert set(ident.astype(int)) == set(range(1, 7))


def test_enter_leave_occlusion_crossing(default_run):
    out, _, _ = default_run
    gt = load_gt(out / "synth-0001" / "gt" / "gt.txt")
    firsts, lasts = {}, {}
    for row in gt:
        i = int(row[1])
        firsts.setdefault(i, int(row[0]))
        lasts[i] = int(row[0])
    entering = [i for i in firsts if firsts[i] > 1]
    leaving = [i for i in lasts if lasts[i] < 120]
    assert entering and leaving
    def at_border(row) -> bool:
        return row[2] == 1 or row[3] == 1 or row[2] + row[4] - 1 == 640 or row[3] + row[5] - 1 == 360

    # an object that enters starts at the frame border; one that leaves ends there (a gap in the
    # middle of an id's rows is a full occlusion, which is allowed)
    assert any(at_border(gt[(gt[:, 1] == i) & (gt[:, 0] == firsts[i])][0]) for i in entering)
    assert any(at_border(gt[(gt[:, 1] == i) & (gt[:, 0] == lasts[i])][0]) for i in leaving)
    occluded, crossings = 0, set()
    by_frame = {f: gt[gt[:, 0] == f] for f in np.unique(gt[:, 0])}
    for rows in by_frame.values():
        for a in rows:
            inside = a[2] > 1 and a[3] > 1 and a[2] + a[4] - 1 < 640 and a[3] + a[5] - 1 < 360
            if inside and a[8] < 0.999 and any(overlap(a, b) for b in rows if b[1] != a[1]):
                occluded += 1
    for f in sorted(by_frame)[1:]:  # two overlapping boxes whose centres swap order between frames
        prev = {int(r[1]): r for r in by_frame[f - 1]} if f - 1 in by_frame else {}
        rows = {int(r[1]): r for r in by_frame[f]}
        for i in rows:
            for j in rows:
                if i < j and i in prev and j in prev and overlap(rows[i], rows[j]):
                    for axis in (2, 3):
                        c = lambda r: r[axis] + r[axis + 2] / 2  # noqa: E731
                        if (c(prev[i]) - c(prev[j])) * (c(rows[i]) - c(rows[j])) < 0:
                            crossings.add((i, j))
    assert occluded >= 1
    assert crossings


def test_gt_matches_rendered_pixels():
    cfg = SynthConfig(frames=40)
    empty = next(render(SynthConfig(frames=1, objects=0)))[0]  # the same seed's background, nothing on it
    assert not next(render(SynthConfig(frames=1, objects=0)))[1]
    checked = 0
    for frame, rows in render(cfg):
        covered = np.zeros(frame.shape[:2], bool)
        for r in rows:
            covered[r.top - 1:r.top - 1 + r.height, r.left - 1:r.left - 1 + r.width] = True
            if r.visibility == 1.0:  # the box centre is on the object (rectangle or ellipse)
                cy, cx = r.top - 1 + r.height // 2, r.left - 1 + r.width // 2
                assert np.any(frame[cy, cx] != empty[cy, cx])
                checked += 1
        assert np.array_equal(frame[~covered], empty[~covered])  # outside every box: pure background
    assert checked > 20


def test_decoded_video_matches_gt(default_run):
    out, summary, _ = default_run
    seq = out / "synth-0001"
    frames = list(read_frames(seq / summary["sequences"][0]["video"].split("/")[1]))
    assert len(frames) == 120 and frames[0].shape == (360, 640, 3) and frames[0].dtype == np.uint8
    raw = [f for f, _ in render(SynthConfig())]
    errors = [np.abs(a.astype(int) - b).mean() for a, b in zip(frames, raw)]
    assert max(errors) < 12  # lossy codec, but the same picture
    empty = next(render(SynthConfig(frames=1, objects=0)))[0].astype(int)
    gt = load_gt(seq / "gt" / "gt.txt")
    full = gt[gt[:, 8] == 1]
    diffs = []
    for f, _, left, top, w, h, *_ in full.astype(int):
        cy, cx = top - 1 + h // 2, left - 1 + w // 2
        diffs.append(np.abs(frames[f - 1][cy - 2:cy + 3, cx - 2:cx + 3].astype(int) - empty[cy - 2:cy + 3, cx - 2:cx + 3]).mean())
    assert np.mean(np.array(diffs) > 8) > 0.9


def test_reproducible(default_run, tmp_path):
    out, summary, _ = default_run
    again = synthesize(SynthConfig(), tmp_path / "again")
    assert again["sequences"] == summary["sequences"]
    name = summary["sequences"][0]["video"]
    assert (out / "synth-0001/gt/gt.txt").read_bytes() == (tmp_path / "again/synth-0001/gt/gt.txt").read_bytes()
    assert (out / "synth-0001/seqinfo.ini").read_bytes() == (tmp_path / "again/synth-0001/seqinfo.ini").read_bytes()
    # mp4v through OpenCV's FFmpeg writes byte-identical files for identical frames; decoded frames are
    # compared as well, which is what a consumer relies on.
    assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    for a, b in zip(read_frames(out / name), read_frames(tmp_path / "again" / name), strict=True):
        assert np.array_equal(a, b)
    other = synthesize(SynthConfig(seed=1), tmp_path / "other")
    assert (tmp_path / "other/synth-0001/gt/gt.txt").read_bytes() != (out / "synth-0001/gt/gt.txt").read_bytes()
    assert other["args"]["seed"] == 1


def test_options_noise_pan_videos(tmp_path):
    cfg = SynthConfig(seed=3, frames=30, width=320, height=180, objects=4, noise=8.0, camera="pan", videos=2)
    summary = synthesize(cfg, tmp_path / "v")
    assert [s["name"] for s in summary["sequences"]] == ["synth-0001", "synth-0002"]
    gts = [(tmp_path / "v" / s["gt"]).read_bytes() for s in summary["sequences"]]
    assert gts[0] != gts[1]
    a = next(render(cfg))[0]
    still = [f for f, _ in render(SynthConfig(seed=3, frames=30, width=320, height=180, objects=0))]
    panned = [f for f, _ in render(SynthConfig(seed=3, frames=30, width=320, height=180, objects=0, camera="pan"))]
    assert np.array_equal(still[0], still[-1]) and not np.array_equal(panned[0], panned[-1])
    clean = next(render(dataclasses.replace(cfg, noise=0.0)))[0]  # noise has its own random stream
    assert 6 < (a.astype(int) - clean).std() < 9  # sigma 8 noise, clipped at 0 and 255


def test_reader_png_folder_and_errors(tmp_path):
    frames = [f for f, _ in render(SynthConfig(frames=5, width=64, height=48, objects=2))]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, f in reversed(list(enumerate(frames))):
        cv2.imwrite(str(folder / f"{i:06d}.png"), f)
    (folder / "notes.txt").write_text("not an image")
    read = list(read_frames(folder))
    assert len(read) == 5 and all(np.array_equal(a, b) for a, b in zip(read, frames))

    with pytest.raises(TridesignError, match="no such file"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TridesignError, match="no images"):
        read_frames(tmp_path / "empty")
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video" * 10)
    with pytest.raises(TridesignError) as err:
        read_frames(tmp_path / "junk.mp4")
    assert "\n" not in str(err.value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"broken")
    with pytest.raises(TridesignError, match="cannot read this image"):
        read_frames(tmp_path / "bad")


def test_config_validation():
    for bad in (dict(frames=0), dict(objects=-1), dict(occlusion=1.5), dict(width=641), dict(camera="zoom"),
                dict(noise=-1.0), dict(speed=float("nan")), dict(videos=0)):
        with pytest.raises(UsageError):
            SynthConfig(**bad).validate()


def test_cli(videos_cli, tmp_path):
    out = tmp_path / "v"
    done = videos_cli("synth", "-o", str(out), "--frames", "10", "--size", "160x96", "--objects", "3", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sequences"][0]["frames"] == 10 and (out / MARKER).is_file()
    again = videos_cli("synth", "-o", str(out), "--frames", "12", "--size", "160x96")  # ours: replaced
    assert again.returncode == 0, again.stderr
    assert json.loads((out / MARKER).read_text())["args"]["frames"] == 12

    for args in (["--size", "640by360"], ["--frames", "0"], ["--objects", "-2"], ["--occlusion", "2"],
                 ["--camera", "zoom"], ["--noise", "-1"], ["--size", "641x360"]):
        target = tmp_path / "bad"
        done = videos_cli("synth", "-o", str(target), *args)
        assert done.returncode == 2, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("tridesign: error:"), done.stderr
        assert not target.exists()
        assert not list(tmp_path.glob(".bad*"))

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    done = videos_cli("synth", "-o", str(mine), "--frames", "2")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert (mine / "keep.txt").read_text() == "user data"


def test_mjpg_fallback(tmp_path, monkeypatch):
    import tridesign.data.video as video

    monkeypatch.setattr(video, "CODECS", (("XXXX", ".mkv"), ("MJPG", ".avi")))
    summary = synthesize(SynthConfig(frames=6, width=96, height=64, objects=2), tmp_path / "v")
    seq = summary["sequences"][0]
    assert seq["fourcc"] == "MJPG" and seq["video"].endswith(".avi")
    assert len(list(read_frames(tmp_path / "v" / seq["video"]))) == 6
    assert not list((tmp_path / "v" / "synth-0001").glob("*.mkv"))
