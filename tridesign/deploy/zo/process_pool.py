"""Forward parallelization across processes (DeepZero's workers).

`ProcessPoolLoss` spreads the rows of thetas[k, d] over worker processes, each with its own engine.
It helps when cores outnumber what one session uses; it is kept small because on a 2-core device
it rarely pays.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import onnx

from tridesign.deploy.zo.engine_ort import OrtEngine

_WORKER = None


def _init_worker(model_bytes: bytes, selector: str, inputs: dict, labels: np.ndarray, threads: int) -> None:
    global _WORKER
    _WORKER = OrtEngine(onnx.load_from_string(model_bytes), selector, threads=threads)
    _WORKER.set_batch(inputs, labels)


def _worker_losses(thetas: np.ndarray) -> np.ndarray:
    return _WORKER.loss_batched(thetas)


class ProcessPoolLoss:
    """batched(thetas) spread over `workers` processes, each holding an engine on a fixed batch."""

    def __init__(
        self, model: onnx.ModelProto, selector: str, inputs: dict[str, np.ndarray], labels: np.ndarray, workers: int = 2
    ) -> None:
        self.workers = workers
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            initializer=_init_worker,
            initargs=(model.SerializeToString(), selector, inputs, labels, 1),
        )

    def __call__(self, thetas: np.ndarray) -> np.ndarray:
        chunks = np.array_split(thetas, min(self.workers, len(thetas)))
        return np.concatenate(list(self.pool.map(_worker_losses, chunks)))

    def close(self) -> None:
        self.pool.shutdown()
