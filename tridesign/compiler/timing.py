"""How a session is timed, the same way for every backend, and what memory the process peaked at.

Shared by `profile` and the int8 pass (which measures whether int8 pays off), so their numbers
compare.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Idle time before each measurement. Runtimes keep their worker threads spinning for a while after a
# run (ONNX Runtime's intra-op pool does by default), and on a small machine a spinning pool of
# another session in this process takes a core from the one being timed: TVM ResNet-20 measured
# 1.04 ms right after ORT ran and 0.70 ms after this pause (2 cores), ORT itself unchanged.
SETTLE_S = 0.2


def time_calls(fn: Callable[[], object], repeat: int, warmup: int) -> np.ndarray:
    """Wall-clock ms of `repeat` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - start) * 1000.0
    return times


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """The median of `time_calls` (what benchmarks compare, round by round)."""
    return float(np.median(time_calls(fn, repeat, warmup)))


def time_session(session, inputs: dict[str, np.ndarray], repeat: int, warmup: int) -> np.ndarray:
    """Wall-clock ms of `repeat` runs after `warmup` runs, once other runtimes' threads have parked."""
    time.sleep(SETTLE_S)
    return time_calls(lambda: session.run(inputs), repeat, warmup)
