"""Put the max-pools of a Relax module on the hand-written kernel (`tir_max_pool`).

Every fp32 NCHW `nn.max_pool2d` with static shapes, no dilation, floor mode and padding smaller
than its kernel becomes one `call_tir`; anything else stays with TVM's legalized reduction.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tridesign.kernels.relax_integration import static_shape
from tridesign.kernels.tir_max_pool import PoolGeometry, max_pool2d_func


def _geometry(call: relax.Call) -> PoolGeometry | None:
    """The call's geometry when the kernel computes exactly what it asks for, else None."""
    if not isinstance(call.op, tvm.ir.Op) or call.op.name != "relax.nn.max_pool2d":
        return None
    attrs = call.attrs
    x_shape, out_shape = static_shape(call.args[0]), static_shape(call)
    if x_shape is None or out_shape is None or len(x_shape) != 4 or str(call.ty.dtype) != "float32":
        return None
    kernel = tuple(int(k) for k in attrs.pool_size)
    pad = [int(p) for p in attrs.padding]
    geom = PoolGeometry(kernel, tuple(int(s) for s in attrs.strides), (pad[0], pad[1]))
    if (
        attrs.layout != "NCHW"
        or attrs.out_layout != "NCHW"
        or bool(attrs.ceil_mode)
        or any(int(d) != 1 for d in attrs.dilation)
        or pad[0] >= kernel[0]
        or pad[1] >= kernel[1]
        or geom.out_shape(x_shape, (pad[2], pad[3])) != out_shape
    ):
        return None
    return geom


@relax.expr_functor.mutator
class _MaxPoolRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.added: dict[tuple, tvm.ir.GlobalVar] = {}
        self.rewritten = 0
        self.left = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        geom = _geometry(call)
        if geom is None:
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.max_pool2d":
                self.left += 1
            return super().visit_call_(call)
        kf = max_pool2d_func(static_shape(call.args[0]), static_shape(call), geom)
        if kf.signature not in self.added:
            self.added[kf.signature] = self.builder_.add_func(kf.func, kf.name)
        self.rewritten += 1
        floor = relax.const(np.full(1, -np.inf, np.float32))
        return relax.call_tir(
            self.added[kf.signature], [self.visit_expr(call.args[0]), floor], out_ty=relax.TensorType(kf.out_shape, "float32")
        )


def max_pool_module(mod: tvm.IRModule) -> tuple[tvm.IRModule, int, int]:
    """Rewrite every eligible max-pool; returns the module, how many were rewritten and how many left."""
    rewriter = _MaxPoolRewriter(mod)
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    return rewriter.builder_.get(), rewriter.rewritten, rewriter.left

