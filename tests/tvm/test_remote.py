"""Remote profiling end to end: an RPC server (and a tracker) started on 127.0.0.1 by the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tridesign.compiler.remote import profile_remote
from tridesign.compiler.tvm.tuning import RemoteRunner, tune_model
from tridesign.errors import TridesignError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def start(*args: str) -> subprocess.Popen:
    """A TVM server in its own process group: its session workers must die with it."""
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server and the popen workers it forked for sessions (they outlive a plain kill)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


@pytest.fixture
def rpc_server():
    port = free_port()
    proc = start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1))
    try:
        wait_listening(port, proc)
        yield port
    finally:
        stop(proc)


def test_profile_over_rpc(tvm_resnet20, rpc_server):
    out, _ = tvm_resnet20
    report = profile_remote(out, "127.0.0.1", rpc_server, repeat=5, warmup=1)
    assert report["device"] == "cpu" and report["target"] == "host"
    assert report["latency_ms"]["median"] > 0 and report["latency_ms"]["p99"] >= report["latency_ms"]["median"]
    assert report["module_bytes"] == (out / "module.so").stat().st_size


def test_profile_command_remote_option(tvm_resnet20, rpc_server, cli):
    out, _ = tvm_resnet20
    done = cli("profile", str(out), "--remote", f"127.0.0.1:{rpc_server}", "--repeat", "3", "--warmup", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["remote"].endswith(str(rpc_server)) and report["latency_ms"]["median"] > 0
    bad = cli("profile", str(out), "--tracker", "127.0.0.1:9190")
    assert bad.returncode == 2 and "--tracker needs --key" in bad.stderr


@pytest.fixture
def tracker_board():
    """A tracker on 127.0.0.1 and an RPC server registered with it as key `test-board`."""
    tracker_port = free_port()
    tracker = start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port), "--port-end", str(tracker_port + 1))
    server = None
    try:
        wait_listening(tracker_port, tracker)
        port = free_port()
        server = start(
            "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1),
            "--tracker", f"127.0.0.1:{tracker_port}", "--key", "test-board",
        )
        wait_listening(port, server)
        deadline = time.monotonic() + 120  # the server registers with the tracker after it listens
        while "test-board" not in registered_keys(tracker_port):
            if time.monotonic() > deadline:
                pytest.fail("the RPC server did not register with the tracker within 120 s")
            time.sleep(0.5)
        yield tracker_port
    finally:
        for proc in (server, tracker):
            if proc is not None:
                stop(proc)


def registered_keys(tracker_port: int) -> list[str]:
    from tvm import rpc

    summary = rpc.connect_tracker("127.0.0.1", tracker_port).summary()
    return [info["key"].removeprefix("server:") for info in summary["server_info"]]


def test_profile_through_a_tracker(tvm_resnet20, tracker_board):
    report = profile_remote(tvm_resnet20[0], tracker=("127.0.0.1", tracker_board), key="test-board", repeat=3, warmup=1)
    assert report["remote"].endswith("key test-board") and report["latency_ms"]["median"] > 0


def test_unknown_key_fails_at_once_with_the_registered_keys(tvm_resnet20, tracker_board, small_conv_model, tmp_path):
    with pytest.raises(TridesignError, match=r"under key 'no-such-board' \(registered: test-board\)"):
        profile_remote(tvm_resnet20[0], tracker=("127.0.0.1", tracker_board), key="no-such-board", repeat=1, warmup=0)
    remote = RemoteRunner("127.0.0.1", tracker_board, "no-such-board")
    with pytest.raises(TridesignError, match="under key 'no-such-board'"):
        tune_model(small_conv_model, "host", 2, db_dir=tmp_path / "db", remote=remote, quiet=True)
    assert not (tmp_path / "db").exists()  # refused before any database was opened


def test_tuning_measures_on_the_board_through_the_tracker(tracker_board, odd_model, tmp_path):
    """MetaSchedule builds candidates here and its RPC runner times them on the tracked board."""
    db = tmp_path / "db"
    remote = RemoteRunner("127.0.0.1", tracker_board, "test-board")
    report = tune_model(odd_model, "host", 4, db_dir=db, remote=remote, quiet=True)
    # MatMul, ReLU and Sigmoid kernels: 4 trials go to the heaviest first, not to all three
    assert report["records_added"] >= 1 and report["kernels"] == 3 and report["kernels_tuned"] >= 1
    records = [json.loads(line) for line in (db / "database_tuning_record.json").read_text().splitlines()]
    run_secs = [secs for record in records for secs in record[1][1]]
    assert run_secs and all(0 < s < 1e9 for s in run_secs)  # measured times, not the 1e10 error marker


def test_unreachable_server_is_a_one_line_error(tvm_resnet20):
    with pytest.raises(TridesignError, match="cannot reach the TVM RPC server at 127.0.0.1"):
        profile_remote(tvm_resnet20[0], "127.0.0.1", free_port(), repeat=1, warmup=0, timeout_s=5)
