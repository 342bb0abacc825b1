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


def test_profile_through_a_tracker(tvm_resnet20):
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
        time.sleep(2)  # the server registers with the tracker after it starts listening
        report = profile_remote(tvm_resnet20[0], tracker=("127.0.0.1", tracker_port), key="test-board", repeat=3, warmup=1)
        assert report["remote"].endswith("key test-board") and report["latency_ms"]["median"] > 0
    finally:
        for proc in (server, tracker):
            if proc is not None:
                stop(proc)


def test_unreachable_server_is_a_one_line_error(tvm_resnet20):
    with pytest.raises(TridesignError, match="cannot reach the TVM RPC server at 127.0.0.1"):
        profile_remote(tvm_resnet20[0], "127.0.0.1", free_port(), repeat=1, warmup=0, timeout_s=5)
