"""Profile a TVM artifact on a board over TVM RPC (`tridesign profile DIR --remote HOST:PORT`).

The board runs only TVM's runtime and its RPC server (`python -m tvm.exec.rpc_server`), directly
reachable or registered with a tracker under a key. The module is uploaded, loaded into a Relax VM
on the remote device, and timed there with TVM's time_evaluator (the clock runs on the board, so
network latency is not in the numbers). Outputs come back and are compared with the artifact's
reference outputs when it has them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.artifact import INPUTS_FILE, REFERENCE_FILE, TVM_IO_FILE, load_npz
from tridesign.board.tvm_module import flatten
from tridesign.errors import TridesignError, UsageError
from tridesign.targets import get_target


def require_board(tracker: tuple[str, int], key: str, wait_s: float = 10.0) -> None:
    """Fail with the registered keys when no board serves `key`: a tracker request would wait forever.

    TVM's tracker queues a request for an unknown key until some server registers it, so a typo
    in --key (or a board that is down) would hang `profile` and `tune` without a word. A board
    re-registers after each session it served, so the key is polled for `wait_s` before failing.
    """
    from tvm import rpc

    deadline = time.monotonic() + wait_s
    while True:
        try:
            summary = rpc.connect_tracker(*tracker).summary()
        except (OSError, RuntimeError) as err:
            raise TridesignError(
                f"cannot reach the TVM RPC tracker at {tracker[0]}:{tracker[1]}: {str(err).splitlines()[0]}"
            ) from None
        keys = sorted({info["key"].removeprefix("server:") for info in summary.get("server_info", []) if "key" in info})
        if key in keys or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if key not in keys:
        raise TridesignError(
            f"no board is registered with the tracker at {tracker[0]}:{tracker[1]} under key {key!r} "
            f"(registered: {', '.join(keys) or 'none'})"
        )


def connect(host: str, port: int, tracker: tuple[str, int] | None, key: str | None, timeout_s: int) -> Any:
    """An RPC session: straight to HOST:PORT, or a board leased from a tracker by its key."""
    from tvm import rpc

    if tracker is not None:
        if not key:
            raise UsageError("--tracker needs --key (the device key the board registered with)")
        require_board(tracker, key)
    try:
        if tracker is not None:
            return rpc.connect_tracker(*tracker).request(key, session_timeout=timeout_s)
        return rpc.connect(host, port, session_timeout=timeout_s)
    except (OSError, RuntimeError) as err:
        where = f"tracker {tracker[0]}:{tracker[1]} key {key!r}" if tracker else f"{host}:{port}"
        raise TridesignError(f"cannot reach the TVM RPC server at {where}: {str(err).splitlines()[0]}") from None


def artifact_inputs(artifact_dir: Path, io: dict[str, Any]) -> dict[str, np.ndarray]:
    """The artifact's own verification inputs, or seeded random inputs of the recorded shapes."""
    path = artifact_dir / INPUTS_FILE
    if path.exists():
        return load_npz(path)
    rng = np.random.default_rng(0)
    return {i["name"]: rng.standard_normal(i["shape"]).astype(i["dtype"]) for i in io["inputs"]}


def profile_remote(
    artifact_dir: Path,
    host: str | None = None,
    port: int | None = None,
    tracker: tuple[str, int] | None = None,
    key: str | None = None,
    repeat: int = 50,
    warmup: int = 5,
    timeout_s: int = 600,
) -> dict[str, Any]:
    """Upload the artifact's module to a TVM RPC server and time it on the remote device.

    Returns latency (ms: median, p90, p99, mean, min), the device, the module size, and the max
    abs error of the remote outputs vs the artifact's reference outputs (None without them).
    """
    from tvm import relax
    import tvm

    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    if tracker is None and (host is None or port is None):
        raise UsageError("give --remote HOST:PORT, or --tracker HOST:PORT with --key")
    artifact_dir = Path(artifact_dir)
    io_path = artifact_dir / TVM_IO_FILE
    if not io_path.exists():
        raise TridesignError(f"{artifact_dir} is not a TVM artifact (no {TVM_IO_FILE}); compile with --backend tvm")
    io = json.loads(io_path.read_text())
    module = artifact_dir / io["module"]
    if module.suffix != ".so":
        raise TridesignError(f"{module.name} is not linked; install the cross compiler and compile again")
    session = connect(host or "", port or 0, tracker, key, timeout_s)
    session.upload(str(module), target=module.name)
    library = session.load_module(module.name)
    spec = get_target(io["target"]) if io["target"] != "host" else None
    device = session.cuda(0) if spec is not None and spec.device is not None else session.cpu(0)
    vm = relax.VirtualMachine(library, device)
    inputs = artifact_inputs(artifact_dir, io)
    args = [tvm.runtime.tensor(np.ascontiguousarray(inputs[i["name"]], dtype=i["dtype"]), device) for i in io["inputs"]]
    vm.set_input("main", *args)
    for _ in range(warmup):
        vm.invoke_stateful("main")
    timer = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeat)
    times_ms = np.asarray(timer("main").results) * 1e3
    outputs = flatten(vm.get_outputs("main"))
    return {
        "remote": f"tracker {tracker[0]}:{tracker[1]} key {key}" if tracker else f"{host}:{port}",
        "device": "cuda" if device.dlpack_device_type() % 128 == tvm.cuda().dlpack_device_type() else "cpu",
        "target": io["target"],
        "module_bytes": module.stat().st_size,
        "repeat": repeat,
        "warmup": warmup,
        "latency_ms": {
            "median": float(np.median(times_ms)),
            "p90": float(np.percentile(times_ms, 90)),
            "p99": float(np.percentile(times_ms, 99)),
            "mean": float(times_ms.mean()),
            "min": float(times_ms.min()),
        },
        "max_abs_err": _max_error(artifact_dir, io["outputs"], outputs),
    }


def _max_error(artifact_dir: Path, names: list[str], outputs: list[np.ndarray]) -> float | None:
    path = artifact_dir / REFERENCE_FILE
    if not path.exists():
        return None
    reference = load_npz(path)
    errors = [float(np.max(np.abs(reference[n] - o))) for n, o in zip(names, outputs) if n in reference]
    return max(errors, default=None)
