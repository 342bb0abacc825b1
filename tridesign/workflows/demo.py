"""The built-in default job (`make demo`): export -> compile -> profile -> simulate -> report.

The default model (DeepZero's ResNet-20, tiny) goes through both backends (ONNX Runtime and TVM);
one model of every other project goes through ONNX Runtime, so the summary shows each project's
model verified and profiled; the default model is also simulated on the tri-design accelerator
preset. Keeps to a few minutes on 2 cores (the TVM build dominates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tridesign.artifact import MANIFEST_FILE, MODEL_FILE
from tridesign.atomic import atomic_dir
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.pipeline import compile_artifact
from tridesign.compiler.profile import profile_artifact
from tridesign.progress import stderr

DEFAULT_MODEL = "resnet20"
DEFAULT_BACKENDS = ("ort", "tvm")
# One model of every other project, compiled with the CPU reference backend.
PROJECT_MODELS = (
    "zoaeds_whitebox",
    "qdtrack",
    "tvp",
    "dp4tl_surrogate_resnet18",
    "sd14_text_encoder",
    "advunlearn_text_encoder",
    "idpatch_unet_controlnet",
)
DEFAULT_ARCH = "tridesign-alveo"


def demo_jobs() -> list[tuple[str, str]]:
    return [(DEFAULT_MODEL, b) for b in DEFAULT_BACKENDS] + [(m, "ort") for m in PROJECT_MODELS]


def _compile_and_profile(model: str, backend: str, artifact: Path, final: Path) -> dict[str, Any]:
    manifest = compile_artifact(model, CompileOptions(backend=backend), artifact)
    profile = profile_artifact(artifact, repeat=20, warmup=3)
    return {
        "model": model,
        "project": getattr(manifest.source, "project", ""),
        "backend": backend,
        "tuned": manifest.tuned,
        "latency_ms": profile["latency_ms"]["median"],
        "p90_ms": profile["latency_ms"]["p90"],
        "parameters": profile["parameters"],
        "dense_macs": profile["dense_macs"],
        "artifact_bytes": profile["artifact_bytes"],
        "max_abs_err": profile["max_abs_err"],
        "compile_seconds": manifest.compile_seconds,
        "notes": manifest.notes,
        "artifact": str(final),
    }


def _simulate(onnx_path: Path, report: Path) -> dict[str, Any]:
    """The default model on the tri-design accelerator preset, with its HTML report."""
    from tridesign.hwsim.report import write_html
    from tridesign.hwsim.simulate import simulate
    from tridesign.hwsim.spec import load_spec
    from tridesign.hwsim.workload import load_workload

    system = load_spec(DEFAULT_ARCH)
    result = simulate(load_workload(onnx_path, name=DEFAULT_MODEL), system)
    write_html(result, system, report)
    totals = result.to_dict()["totals"]
    return {"model": DEFAULT_MODEL, "arch": DEFAULT_ARCH, "dataflow": result.dataflow, "report": report.name} | {
        k: totals[k] for k in ("cycles", "latency_ms", "fps", "util_effective", "dram_bytes", "energy_per_frame_j", "power_w")
    }


def run_demo(out_dir: Path, jobs: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Compile, profile and simulate; write summary.json and index.html into out_dir (atomically)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with atomic_dir(out_dir, MANIFEST_FILE) as tmp:
        (tmp / "artifacts").mkdir()
        for model, backend in jobs or demo_jobs():
            stderr.rule(f"{model} on {backend}")
            name = f"{model}-{backend}"
            rows.append(_compile_and_profile(model, backend, tmp / "artifacts" / name, out_dir / "artifacts" / name))
        stderr.rule(f"{DEFAULT_MODEL} on the {DEFAULT_ARCH} accelerator (simulated)")
        simulation = _simulate(tmp / "artifacts" / f"{DEFAULT_MODEL}-ort" / MODEL_FILE, tmp / "simulation.html")
        summary = {"rows": rows, "simulation": simulation, "report": str(out_dir / "index.html")}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        env = Environment(loader=PackageLoader("tridesign", "templates"), autoescape=select_autoescape())
        (tmp / "index.html").write_text(env.get_template("demo.html.j2").render(rows=rows, simulation=simulation))
        (tmp / MANIFEST_FILE).write_text(json.dumps({"format": "tridesign-demo/1", "jobs": [[r["model"], r["backend"]] for r in rows]}))
    return summary
