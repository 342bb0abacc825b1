"""`tridesign codesign`: the joint search end to end, checked against independent recomputation.

Classification runs on the trained digits ResNet-20 (real accuracy); video runs on the tiny
(untrained) detector config on a short synthetic video: its MOTA means nothing, the mechanics
(tracking through the compiled artifact, measured data sparsity into the simulator) are real.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from tridesign.annotations import read_data_sparsity
from tridesign.data.digits import load_digits_split
from tridesign.data.video import SynthConfig, synthesize
from tridesign.errors import UsageError
from tridesign.hwsim.simulate import simulate
from tridesign.hwsim.spec import load_spec
from tridesign.hwsim.workload import load_workload
from tridesign.tracking.metrics import score
from tridesign.tracking.mot import read_mot
from tridesign.workflows import codesign
from tridesign.workflows.codesign import CodesignJob, run_codesign
from tridesign.workflows.codesign_space import circuit_system, load_space

ARCH = "zynq-ultrascale"
CLASSIFICATION_SPACE = {
    "version": 1,
    "model": {"prune": ["dense", "unstructured:0.8"], "int8": [False, True], "recovery_steps": [20]},
    "circuit": {"array_rows": [8, 16], "weight_skipping": [False, True]},
}


def write_space(path: Path, space: dict) -> Path:
    path.write_text(yaml.safe_dump(space))
    return path


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]


def dominates(a: dict, b: dict) -> bool:
    keys = ("latency_ms", "energy_per_frame", "area_mm2")
    no_worse = a["accuracy"] >= b["accuracy"] and all(a[k] <= b[k] for k in keys)
    return no_worse and (a["accuracy"] > b["accuracy"] or any(a[k] < b[k] for k in keys))


@pytest.fixture(scope="module")
def classification(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("codesign")
    job = CodesignJob("resnet20_digits", "classification", arch=ARCH, space=write_space(root / "space.yaml", CLASSIFICATION_SPACE))
    return root / "out", run_codesign(job, root / "out")


def test_classification_points_are_measured_and_simulated(classification) -> None:
    out, summary = classification
    rows = rows_of(out)
    assert summary["measured_points"] == 4 and summary["sampler"] == "grid" and len(rows) == 4 * 4
    split = load_digits_split()
    system = load_spec(ARCH)
    for row in rows[::5]:
        # top-1 recomputed from the cached artifact's model with ONNX Runtime directly
        model = Path(row["measured"]["artifact"]) / "model.onnx"
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[None]})[0] for x in split.x_test])
        assert row["accuracy"] == pytest.approx(float((logits.argmax(1) == split.y_test).mean()), abs=1e-12)
        # the simulated numbers are simulate() of that model on the circuit point
        result = simulate(load_workload(model), circuit_system(system, row["circuit"]))
        assert row["energy_per_frame"] == pytest.approx(result.totals["energy_per_input_frame_j"], rel=1e-12)
        assert row["latency_ms"] == pytest.approx(result.totals["latency_ms"], rel=1e-12)
    by = {(r["model"]["prune"], r["model"]["int8"], r["circuit"]["array_rows"], r["circuit"]["weight_skipping"]): r for r in rows}
    # zero weights pay only where the circuit skips them; 8-bit words move half the bytes of 16-bit ones
    assert by[("unstructured:0.8", False, 16, True)]["energy_per_frame"] < 0.7 * by[("dense", False, 16, True)]["energy_per_frame"]
    assert by[("unstructured:0.8", False, 16, False)]["energy_per_frame"] == pytest.approx(by[("dense", False, 16, False)]["energy_per_frame"], rel=1e-9)
    assert by[("dense", True, 16, False)]["energy_per_frame"] < by[("dense", False, 16, False)]["energy_per_frame"]


def test_classification_front_report_and_reproduction(classification, cli, tmp_path) -> None:
    out, summary = classification
    rows = rows_of(out)
    pareto = json.loads((out / "pareto.json").read_text())["points"]
    assert pareto and all(not any(dominates(r, p) for r in rows) for p in pareto)
    assert all(any(dominates(p, r) for p in pareto) or r in pareto for r in rows)
    chosen = summary["chosen"]
    assert chosen in pareto and chosen["accuracy"] >= summary["baseline"]["accuracy"] - 0.02
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Chosen point" in html
    # the printed commands rebuild the chosen point and simulate it to the same numbers
    compile_cmd, simulate_cmd = summary["commands"]
    artifact = tmp_path / "art"
    res = cli(*compile_cmd.split()[1:-1], str(artifact))
    assert res.returncode == 0, res.stderr
    res = cli("simulate", str(artifact), "--arch", str(out / "chosen_arch.yaml"), "--json")
    assert res.returncode == 0, res.stderr
    assert simulate_cmd.endswith("--arch " + str(out / "chosen_arch.yaml"))
    assert json.loads(res.stdout)["totals"]["energy_per_input_frame_j"] == pytest.approx(chosen["energy_per_frame"], rel=1e-9)


def test_interrupted_search_resumes_the_same_study(tmp_path, monkeypatch) -> None:
    space = write_space(tmp_path / "space.yaml", {"version": 1, "model": {"prune": ["dense", "nm:2:4", "unstructured:0.5"]},
                                                 "circuit": {"array_rows": [8, 16]}})
    job = CodesignJob("resnet20_digits", "classification", arch=ARCH, space=space, sampler="nsga2", budget=3, seed=1)
    calls = []
    real = codesign.evaluate

    def interrupted(ctx, point):
        calls.append(point["prune"])
        if len(calls) == 3:  # the baseline, one proposal, then Ctrl-C in the middle of the second
            raise KeyboardInterrupt
        return real(ctx, point)

    monkeypatch.setattr(codesign, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_codesign(job, tmp_path / "out")
    assert len(rows_of(tmp_path / "out")) == 2  # the finished proposal is on disk
    monkeypatch.setattr(codesign, "evaluate", lambda ctx, point: calls.append(point["prune"]) or real(ctx, point))
    summary = run_codesign(job, tmp_path / "out")
    assert summary["measured_points"] == 3 and len(rows_of(tmp_path / "out")) == 6
    assert len(calls) == 3 + 2  # resumed: the baseline and the first proposal were not measured again
    with sqlite3.connect(tmp_path / "out" / "study.db") as db:
        states = sorted(s for (s,) in db.execute("select state from trials"))
    assert states.count("COMPLETE") >= 3 and "RUNNING" not in states
    other = CodesignJob("resnet20_digits", "classification", arch="eyeriss-like", space=space, budget=3)
    with pytest.raises(UsageError, match="holds another search .*arch"):
        run_codesign(other, tmp_path / "out")


@pytest.mark.parametrize(("space", "message"), [
    ({"model": {"prune": []}}, "model.prune: List should have at least 1 item"),
    ({"model": {"prunes": ["dense"]}}, "model.prunes: unknown key"),
    ({"model": {"prune": ["dense", "dense"]}}, "lists a value twice"),
    ({"model": {"prune": ["nm:5:4"]}}, "N:M spec 'nm:5:4' needs N <= M"),
    ({"data": {"frame_drop": ["0.4"]}}, "a classification search has no data-sparsity axis"),
    ({"circuit": {"array_rows": [0]}}, "array_rows: Input should be greater than 0"),
    ({"circuit": {"word_bits": [8]}}, "circuit.word_bits: unknown key"),
])
def test_bad_space_is_one_line_usage_error(tmp_path, space, message) -> None:
    path = write_space(tmp_path / "s.yaml", {"version": 1, **space})
    with pytest.raises(UsageError) as err:
        load_space(path, "classification", load_spec(ARCH))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_video_data_errors_and_cli_exit_codes(tmp_path, cli) -> None:
    write_space(tmp_path / "v.yaml", {"version": 1, "data": {"frame_drop": ["none", "rate:2"]}})
    with pytest.raises(UsageError, match="frame_drop 'rate:2': the rate must lie in"):
        load_space(tmp_path / "v.yaml", "video", load_spec(ARCH))
    res = cli("codesign", "qdtrack_center", "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "needs --data DIR" in res.stderr and "Traceback" not in res.stderr
    res = cli("codesign", "qdtrack_center", "--data", str(tmp_path), "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "no MOT sequence" in res.stderr
    res = cli("codesign", "resnet20_digits", "--task", "classification", "--budget", "0", "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "--budget must be at least 1" in res.stderr
    assert not (tmp_path / "o").exists()


def test_video_search_tracks_and_simulates_the_measured_sparsity(tmp_path) -> None:
    synthesize(SynthConfig(seed=21, frames=16, width=320, height=192, objects=3), tmp_path / "videos")
    space = write_space(tmp_path / "space.yaml", {"version": 1, "data": {"frame_drop": ["none", "0.5"], "patch_drop": [0.0, 0.25]},
                                                  "circuit": {"array_rows": [16, 32]}})
    job = CodesignJob("qdtrack_center", "video", arch="tridesign-alveo", data=tmp_path / "videos", space=space, config="tiny")
    summary = run_codesign(job, tmp_path / "out")
    rows = rows_of(tmp_path / "out")
    assert summary["measured_points"] == 4 and len(rows) == 8
    gt = read_mot(tmp_path / "videos" / "synth-0001" / "gt" / "gt.txt")
    for row in rows:
        run = tmp_path / "out" / "runs" / row["key"]
        # MOTA recomputed by TrackEval from the run's own results file (the untrained detector may find nothing)
        results = run / "synth-0001" / "results.txt"
        assert row["accuracy"] == pytest.approx(score(gt, read_mot(results) if results.read_text().strip() else [], 16)["MOTA"], abs=1e-12)
        record = read_data_sparsity(onnx.load(str(run / "detector.onnx")))
        assert record.frame_keep_fraction == pytest.approx(0.5 if row["data"]["frame_drop"] == "0.5" else 1.0, abs=1 / 16)
        assert (record.active_tile_fraction < 0.9) == (row["data"]["patch_drop"] > 0)
        row["keep"] = record.frame_keep_fraction
    dense = {r["circuit"]["array_rows"]: r for r in rows if r["data"]["frame_drop"] == "none" and r["data"]["patch_drop"] == 0}
    dropped = {r["circuit"]["array_rows"]: r for r in rows if r["data"]["frame_drop"] == "0.5" and r["data"]["patch_drop"] == 0}
    for size in (16, 32):  # a skipped frame costs nothing on an arch that skips frames
        assert dropped[size]["keep"] < 1
        assert dropped[size]["energy_per_frame"] == pytest.approx(dropped[size]["keep"] * dense[size]["energy_per_frame"], rel=1e-9)
    commands = summary["commands"]
    assert [c.split()[1] for c in commands] == ["compile", "track", "simulate"]
    assert commands[2].endswith(f"{summary['chosen']['key']}/detector.onnx --arch {tmp_path / 'out' / 'chosen_arch.yaml'}")


def test_failed_point_is_recorded_and_the_search_goes_on(tmp_path, monkeypatch) -> None:
    from tridesign.errors import TridesignError

    space = write_space(tmp_path / "space.yaml", {"version": 1, "model": {"prune": ["dense", "nm:2:4"]}})
    real = codesign.evaluate

    def refuse_nm(ctx, point):
        if point["prune"] == "nm:2:4":
            raise TridesignError("ort output differs from ONNX Runtime: max abs error 0.1 > 0.01; nothing was written")
        return real(ctx, point)

    monkeypatch.setattr(codesign, "evaluate", refuse_nm)
    summary = run_codesign(CodesignJob("resnet20_digits", "classification", arch=ARCH, space=space), tmp_path / "out")
    assert summary["measured_points"] == 1 and summary["points"] == 1 and summary["stopped"].startswith("budget: 2")
    assert summary["failed"] == [{"point": {"prune": "nm:2:4", "int8": False, "recovery_steps": 0},
                                  "error": "ort output differs from ONNX Runtime: max abs error 0.1 > 0.01; nothing was written"}]


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_parallel_executors_measure_what_the_serial_search_does(classification, tmp_path, executor) -> None:
    if executor == "ray":
        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        job = CodesignJob("resnet20_digits", "classification", arch=ARCH, executor=executor, workers=2,
                          space=write_space(tmp_path / "space.yaml", CLASSIFICATION_SPACE))
        summary = run_codesign(job, tmp_path / "out")
    finally:
        if executor == "ray":
            ray.shutdown()
    serial = {(r["key"], json.dumps(r["circuit"])): r for r in rows_of(classification[0])}
    rows = rows_of(tmp_path / "out")
    assert summary["measured_points"] == 4 and len(rows) == len(serial)
    for row in rows:
        twin = serial[(row["key"], json.dumps(row["circuit"]))]
        assert (row["accuracy"], row["energy_per_frame"], row["latency_ms"]) == (twin["accuracy"], twin["energy_per_frame"], twin["latency_ms"])


def test_spaces_too_large_to_search_are_refused_with_their_size(tmp_path) -> None:
    big_model = {"version": 1, "model": {"prune": ["dense"] + [f"unstructured:0.{i:03d}" for i in range(1, 400)],
                                         "recovery_steps": list(range(300))}}
    with pytest.raises(UsageError, match="120,000 \\(data, model\\) points"):
        run_codesign(CodesignJob("resnet20_digits", "classification", arch=ARCH, space=write_space(tmp_path / "m.yaml", big_model)),
                     tmp_path / "out")
    big_circuit = {"version": 1, "circuit": {"array_rows": list(range(1, 201)), "array_cols": list(range(1, 101))}}
    with pytest.raises(UsageError, match="circuit: 20,000 points"):
        load_space(write_space(tmp_path / "c.yaml", big_circuit), "classification", load_spec(ARCH))
    assert not (tmp_path / "out").exists()
