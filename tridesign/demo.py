"""The built-in default job (`make demo`): export -> compile with every backend -> profile -> report.

It runs the default model of each project in the registry that has a demo entry, so the summary shows
what the toolchain does end to end in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tridesign.atomic import atomic_dir
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.profile import profile_artifact
from tridesign.progress import stderr

DEMO_MODELS = ("resnet20",)
DEMO_BACKENDS = ("ort", "tvm")


def run_demo(out_dir: Path, models: tuple[str, ...] = DEMO_MODELS, backends: tuple[str, ...] = DEMO_BACKENDS) -> dict[str, Any]:
    """Compile and profile `models` with `backends`; write summary.json and index.html into out_dir."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with atomic_dir(out_dir) as tmp:
        for model in models:
            for backend in backends:
                stderr.rule(f"{model} on {backend}")
                artifact = tmp / "artifacts" / f"{model}-{backend}"
                artifact.parent.mkdir(exist_ok=True)
                manifest = compile_artifact(model, CompileOptions(backend=backend), artifact)
                profile = profile_artifact(artifact, repeat=20, warmup=3)
                rows.append({
                    "model": model,
                    "project": manifest["source"].get("project", ""),
                    "backend": backend,
                    "tuned": manifest["tuned"],
                    "latency_ms": profile["latency_ms"]["median"],
                    "p90_ms": profile["latency_ms"]["p90"],
                    "parameters": profile["parameters"],
                    "dense_macs": profile["dense_macs"],
                    "artifact_bytes": profile["artifact_bytes"],
                    "max_abs_err": profile["max_abs_err"],
                    "compile_seconds": manifest["compile_seconds"],
                    "notes": manifest["notes"],
                    "artifact": str(out_dir / "artifacts" / f"{model}-{backend}"),
                })
        summary = {"rows": rows, "report": str(out_dir / "index.html")}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        env = Environment(loader=PackageLoader("tridesign", "templates"), autoescape=select_autoescape())
        (tmp / "index.html").write_text(env.get_template("demo.html.j2").render(rows=rows))
        (tmp / "manifest.json").write_text(json.dumps({"format": "tridesign-demo/1", "models": list(models)}))
    return summary
