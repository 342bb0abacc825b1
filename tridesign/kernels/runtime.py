"""Run and time a compiled kernel from numpy, with its packed weights bound once.

Every kernel follows one calling convention, the one Relax's `call_tir` uses as well:
activations first, then the packed weight arrays, then the output buffer (destination-passing).
`BoundKernel` keeps the weight arrays on the device so calls and timings only move activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm

from tridesign.kernels.build import Signature, build


def _as_kernel_array(a: np.ndarray) -> np.ndarray:
    """Floats go in as float32, integer inputs (tile ids) keep their int32 type."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=np.int32 if a.dtype.kind in "iu" else np.float32)


@dataclass(frozen=True)
class KernelFunc:
    """A generated PrimFunc with the signature it is cached under and its output shape."""

    func: tvm.tirx.PrimFunc
    signature: Signature
    out_shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return str(self.func.attrs["global_symbol"])


@dataclass
class BoundKernel:
    """A compiled kernel plus its constant arguments (packed weights, tile ids) in device memory."""

    kernel: KernelFunc
    consts: list[np.ndarray]
    target: tvm.target.Target | None = None
    _mod: tvm.runtime.Module | None = field(default=None, init=False, repr=False)
    _dev_consts: list[tvm.runtime.Tensor] = field(default_factory=list, init=False, repr=False)

    def _prepare(self) -> tvm.runtime.Module:
        if self._mod is None:
            self._mod = build(self.kernel.func, self.kernel.signature, self.target)
            dev = tvm.cpu()
            self._dev_consts = [tvm.runtime.tensor(np.ascontiguousarray(c), dev) for c in self.consts]
        return self._mod

    def _args(self, inputs: tuple[np.ndarray, ...]) -> list[tvm.runtime.Tensor]:
        dev = tvm.cpu()
        acts = [tvm.runtime.tensor(_as_kernel_array(a), dev) for a in inputs]
        out = tvm.runtime.tensor(np.zeros(self.kernel.out_shape, dtype=np.float32), dev)
        return [*acts, *self._dev_consts, out]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        mod = self._prepare()
        args = self._args(inputs)
        mod[self.kernel.name](*args)
        return args[-1].numpy()

    def time_ms(self, *inputs: np.ndarray, number: int = 10, repeat: int = 7) -> float:
        """Median over `repeat` runs of the mean of `number` calls, after one warm-up call."""
        mod = self._prepare()
        args = self._args(inputs)
        mod[self.kernel.name](*args)
        timer = mod.time_evaluator(self.kernel.name, tvm.cpu(), number=number, repeat=repeat)
        return float(np.median(timer(*args).results) * 1e3)
