"""`tridesign targets` and `tridesign tune` as a user runs them (subprocess)."""

from __future__ import annotations

import json

import onnx


def test_targets_json_lists_boards_and_host(cli):
    proc = cli("targets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)["targets"]}
    assert {"host", "jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx", "raspberry-pi-5", "cuda:sm_90"} <= set(rows)
    assert rows["host"]["runs_here"] and rows["jetson-agx-orin"]["tvm"]["arch"] == "sm_87"


def test_tune_usage_errors_exit_2(cli, tmp_path, small_conv_model):
    path = tmp_path / "conv.onnx"
    onnx.save(small_conv_model, path)
    bad_trials = cli("tune", str(path), "--trials", "0", "--db", str(tmp_path / "db"))
    assert bad_trials.returncode == 2 and "--trials must be at least 1" in bad_trials.stderr
    lonely_tracker = cli("tune", str(path), "--trials", "4", "--tracker", "127.0.0.1:9190")
    assert lonely_tracker.returncode == 2 and "--tracker and --key go together" in lonely_tracker.stderr
    bad_target = cli("tune", str(path), "--trials", "4", "--target", "jetson-nano-2gb")
    assert bad_target.returncode == 2 and "unknown target" in bad_target.stderr
    assert "Traceback" not in bad_trials.stderr + lonely_tracker.stderr + bad_target.stderr


def test_tune_for_a_board_without_a_tracker_is_refused(cli, tmp_path, small_conv_model):
    path = tmp_path / "conv.onnx"
    onnx.save(small_conv_model, path)
    proc = cli("tune", str(path), "--trials", "4", "--target", "raspberry-pi-5", "--db", str(tmp_path / "db"))
    assert proc.returncode == 1 and "cannot be measured on this machine" in proc.stderr
