"""`make demo`'s job, as a user runs it: `tridesign demo -o DIR` in a subprocess with an empty cache
prints one table row per job and writes the report, its summary and one verified artifact per job.
The video part (`--video`, the default) trains the detector on first use: it has its own slow test."""

from __future__ import annotations

import json

import pytest

from tridesign.artifact import load_manifest
from tridesign.workflows.demo import DEFAULT_ARCH, DEFAULT_MODEL, demo_jobs


def test_demo_writes_its_report_rows_and_artifacts(tmp_path, cli) -> None:
    out = tmp_path / "demo"
    done = cli("demo", "-o", str(out), "--no-video")
    assert done.returncode == 0, done.stderr
    jobs = demo_jobs()
    for model, backend in jobs:
        assert any(model[:20] in line and backend in line for line in done.stdout.splitlines()), (model, backend)
    assert f"simulated {DEFAULT_MODEL} on {DEFAULT_ARCH}" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["model"], r["backend"]) for r in summary["rows"]] == jobs
    assert all(r["latency_ms"] > 0 and r["max_abs_err"] <= 1e-3 for r in summary["rows"])
    assert summary["simulation"]["cycles"] > 0 and (out / summary["simulation"]["report"]).is_file()
    assert "<table" in (out / "index.html").read_text()
    for model, backend in jobs:
        manifest = load_manifest(out / "artifacts" / f"{model}-{backend}")
        assert manifest.backend == backend and manifest.verification.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


@pytest.mark.slow
def test_demo_video_part_tracks_dense_and_tridesign(tmp_path) -> None:
    """The video part of `make demo` (it trains the detector when the cache has none): both settings
    tracked, scored and simulated; the tri-design row computes fewer MACs on fewer kept frames."""
    from tridesign.workflows.demo import _video, video_settings

    rows = _video(tmp_path)
    assert [r["setting"] for r in rows] == list(video_settings())
    dense, tri = rows
    assert dense["kept_frames"] == dense["frames"] and tri["kept_frames"] < tri["frames"]
    assert tri["macs_computed"] * 3 <= dense["macs_computed"]
    assert dense["MOTA"] > 0.5 and tri["MOTA"] > 0.4
    assert tri["sim_effective_fps"] > dense["sim_effective_fps"]
    assert all((tmp_path / r["video"]).is_file() for r in rows)
