"""The built-in default job (`make demo`): export -> compile -> profile -> simulate -> report.

The default model (DeepZero's ResNet-20, tiny) goes through both backends (ONNX Runtime and TVM);
one model of every other project goes through ONNX Runtime, so the summary shows each project's
model verified and profiled; the default model is also simulated on the tri-design accelerator
preset. Keeps to a few minutes on 2 cores (the TVM build dominates).

The video part (`video=True`, the default) renders a few seconds of synthetic HD video and tracks
it twice: dense (ONNX Runtime) and tri-design (TVM: 40 % of frames and 20 % of each kept frame's
patches dropped, the detector 90 % pattern-pruned with a short recovery), each scored with
TrackEval and simulated on the accelerator with the sparsity measured on the video. Its first run
trains the detector (up to ten minutes on 2 cores, then cached) and compiles both detectors.
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
VIDEO_SEED = 3  # evaluation seeds stay below 1000; the detector trains on seeds from 1000
VIDEO_FRAMES = 90
TRIDESIGN_PRUNE = "pattern:4:0.9"
TRIDESIGN_RECOVERY_STEPS = 300


def video_settings() -> dict[str, dict[str, Any]]:
    """The two settings the demo tracks with: the dense detector and the paper's tri-design point."""
    from tridesign.sparsity_plan import load_plan

    return {
        "dense (ort)": {"backend": "ort"},
        "tri-design (tvm)": {"backend": "tvm", "frame_drop": "0.4", "patch_drop": 0.2,
                             "prune": load_plan(TRIDESIGN_PRUNE), "finetune_steps": TRIDESIGN_RECOVERY_STEPS},
    }


def _video(tmp: Path) -> list[dict[str, Any]]:
    """Track a synthetic HD video with each of `video_settings`; one row per setting."""
    from tridesign.data.video import SynthConfig, synthesize
    from tridesign.hwsim.simulate import simulate
    from tridesign.hwsim.spec import load_spec
    from tridesign.hwsim.workload import load_workload
    from tridesign.workflows.track import TrackOptions, track

    synthesize(SynthConfig(seed=VIDEO_SEED, frames=VIDEO_FRAMES, width=1280, height=720, objects=8), tmp / "video")
    seq = tmp / "video" / "synth-0001"
    video, gt = next(seq.glob("synth-0001.*")), seq / "gt" / "gt.txt"
    system = load_spec(DEFAULT_ARCH)
    rows = []
    (tmp / "tracks").mkdir()
    for i, (name, kw) in enumerate(video_settings().items()):
        out = tmp / "tracks" / f"{i + 1}-{kw['backend']}"
        summary = track(video, out, TrackOptions(gt=gt, **kw))
        sim = simulate(load_workload(out / "detector.onnx"), system).totals
        rows.append({
            "setting": name, "frames": summary["frames"], "kept_frames": summary["kept_frames"],
            "active_patch_fraction": summary["mean_active_patch_fraction"],
            "MOTA": summary["metrics"]["MOTA"], "IDF1": summary["metrics"]["IDF1"], "HOTA": summary["metrics"]["HOTA"],
            "macs_computed": summary["macs"]["computed_total"], "macs_dense": summary["macs"]["dense_total"],
            "fps": summary["fps"]["pipeline"], "sim_frame_ms": sim["frame_interval_ms"], "sim_effective_fps": sim["effective_fps"],
            "sim_j_per_frame": sim["energy_per_input_frame_j"],
            "video": f"tracks/{out.name}/" + next(f for f in summary["files"] if f.startswith("annotated")),
        })
    return rows


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


def run_demo(out_dir: Path, jobs: list[tuple[str, str]] | None = None, video: bool = True) -> dict[str, Any]:
    """Compile, profile, simulate and (with `video`) track; write summary.json and index.html into out_dir (atomically)."""
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
        tracking = []
        if video:
            stderr.rule("tracking a synthetic HD video: dense vs tri-design")
            tracking = _video(tmp)
        summary = {"rows": rows, "simulation": simulation, "tracking": tracking, "report": str(out_dir / "index.html")}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        env = Environment(loader=PackageLoader("tridesign", "templates"), autoescape=select_autoescape())
        (tmp / "index.html").write_text(env.get_template("demo.html.j2").render(rows=rows, simulation=simulation, tracking=tracking))
        (tmp / MANIFEST_FILE).write_text(json.dumps({"format": "tridesign-demo/1", "jobs": [[r["model"], r["backend"]] for r in rows]}))
    return summary
