"""`make demo`'s job, as a user runs it: `tridesign demo -o DIR` in a subprocess with an empty cache
prints one table row per job and writes the report, its summary and one verified artifact per job."""

from __future__ import annotations

import json

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
