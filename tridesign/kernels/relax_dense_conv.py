"""Put dense convolutions of a Relax module on the register-tiled kernel, epilogue included.

Input: the IRModule `from_onnx(model, keep_params_in_input=False)` builds (weights are constants).
Every ungrouped fp32 NCHW `nn.conv2d` on a constant weight is matched together with the chain of
single-use ops that follows it — `add` of a per-channel constant (bias), `add` of another tensor
of the output's shape (the residual of a ResNet block), `relu` — and the last op's binding becomes
one `call_tir` of `tir_dense_conv` (or `tir_winograd_conv`, as the layer's tile says) that does all
of it; the absorbed bindings are then dead and removed. Grouped/depthwise convolutions, other dtypes and layouts stay with MetaSchedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax

from tridesign.kernels.conv_tiles import ConvLayer, TileBook, conv_consts, conv_kernel
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.relax_integration import static_shape


@dataclass
class _Chain:
    conv: relax.Call
    bias: np.ndarray | None = None
    residual: relax.Expr | None = None
    relu: bool = False

    def layer(self) -> ConvLayer:
        """The conv with its absorbed epilogue, as the kernels and the tile book see it."""
        attrs = self.conv.attrs
        pad = [int(p) for p in attrs.padding]
        geom = ConvGeometry(tuple(int(s) for s in attrs.strides), (pad[0], pad[1]), tuple(int(d) for d in attrs.dilation), 1)
        w_shape = tuple(int(d) for d in self.conv.args[1].value.shape)
        return ConvLayer(static_shape(self.conv.args[0]), w_shape, geom, self.relu, self.residual is not None)


def eligible_conv(value: relax.Expr) -> bool:
    """An ungrouped fp32 NCHW/OIHW conv2d on a constant 4-D weight, symmetric padding, static shapes:
    what the hand-written conv kernels (dense and masked) take."""
    if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op) or value.op.name != "relax.nn.conv2d":
        return False
    attrs, weight = value.attrs, value.args[1]
    if not isinstance(weight, tvm.ir.GenericConst) or str(weight.value.dtype) != "float32" or weight.value.ndim != 4:
        return False
    pad = [int(p) for p in attrs.padding]
    shape = static_shape(value.args[0])
    return (
        shape is not None
        and len(shape) == 4
        and attrs.data_layout == "NCHW"
        and attrs.kernel_layout == "OIHW"
        and attrs.out_layout == "NCHW"
        and int(attrs.groups) == 1
        and pad[:2] == pad[2:]
        and str(value.ty.dtype) == "float32"
    )


def _bias_of(operand: relax.Expr, const: Any, channels: int) -> np.ndarray | None:
    """[CO] when `operand` (an add's other side) is a constant adding one value per output channel.

    The operand must broadcast as [1, CO, 1, 1] or [CO, 1, 1]; `const` is the constant behind it
    (the operand itself, or what a reshape binding reshapes).
    """
    if not isinstance(const, tvm.ir.GenericConst):
        return None
    shape = static_shape(operand)
    value = const.value.numpy()
    if shape is None or value.dtype != np.float32 or value.size != channels:
        return None
    if len(shape) in (3, 4) and shape[-3] == channels and shape[-2:] == (1, 1) and all(d == 1 for d in shape[:-3]):
        return value.reshape(channels)
    return None


class _Planner:
    """Finds each conv's absorbable chain from the bindings and their use counts."""

    def __init__(self, func: relax.Function) -> None:
        self.values: dict[relax.Var, relax.Expr] = {}
        self.claimed: set[relax.Var] = set()
        self.users: dict[relax.Var, list[relax.Var]] = {}
        for block in func.body.blocks:
            for binding in block.bindings:
                self.values[binding.var] = binding.value
                for used in relax.analysis.free_vars(binding.value):
                    self.users.setdefault(used, []).append(binding.var)
        returned = relax.analysis.free_vars(func.body.body)
        for var in returned:
            self.users.setdefault(var, []).append(var)  # a returned var has a user outside the body

    def _constant(self, expr: relax.Expr) -> Any:
        """The constant behind `expr`, looking through a binding of reshape(constant) (ONNX Conv bias)."""
        value = self.values.get(expr) if isinstance(expr, relax.Var) else expr
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.reshape":
            value = value.args[0]
        return value

    def _single_user(self, var: relax.Var) -> tuple[relax.Var, relax.Call] | None:
        users = self.users.get(var, [])
        if len(users) != 1 or not isinstance(var, relax.DataflowVar) or users[0] in self.claimed:
            return None
        user = users[0]
        value = self.values.get(user)
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            return user, value
        return None

    def chains(self) -> dict[relax.Var, _Chain]:
        """The binding whose value the fused call replaces → what it absorbs.

        Convs are visited in program order and each absorbed op is claimed once: in a ResNet
        downsampling block the main branch's conv takes the residual add, and the shortcut conv
        (whose output is that residual) stays a conv of its own.
        """
        plans: dict[relax.Var, _Chain] = {}
        for var, value in self.values.items():
            if not eligible_conv(value):
                continue
            chain, end = _Chain(value), var
            absorbed = [var]
            channels = int(value.args[1].value.shape[0])
            out_shape = static_shape(value)
            nxt = self._single_user(end)
            if nxt and nxt[1].op.name == "relax.add":
                other = nxt[1].args[1] if nxt[1].args[0].same_as(end) else nxt[1].args[0]
                bias = _bias_of(other, self._constant(other), channels)
                if bias is not None:
                    chain.bias, end = bias, nxt[0]
                    absorbed.append(end)
                    nxt = self._single_user(end)
            if nxt and nxt[1].op.name == "relax.add":
                other = nxt[1].args[1] if nxt[1].args[0].same_as(end) else nxt[1].args[0]
                if isinstance(other, relax.Var) and static_shape(other) == out_shape and str(other.ty.dtype) == "float32":
                    chain.residual, end = other, nxt[0]
                    absorbed.append(end)
                    nxt = self._single_user(end)
            if nxt and nxt[1].op.name == "relax.nn.relu":
                chain.relu, end = True, nxt[0]
                absorbed.append(end)
            plans[end] = chain
            self.claimed.update(absorbed)
        return plans


@relax.expr_functor.mutator
class _DenseConvRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, book: TileBook, target: Any) -> None:
        super().__init__(mod)
        self.book, self.target = book, target
        self.plans: dict[relax.Var, _Chain] = {}
        self.added: dict[tuple, tvm.ir.GlobalVar] = {}
        self.layers: list[tuple[ConvLayer, Any]] = []

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        chain = self.plans.get(binding.var)
        if chain is None:
            super().visit_var_binding_(binding)
            return
        value = self._fused_call(chain)
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        self.set_var_remap(binding.var, emit(value))

    def _fused_call(self, chain: _Chain) -> relax.Expr:
        conv = chain.conv
        weight = conv.args[1].value.numpy()
        layer = chain.layer()
        tile = self.book.tile_for(layer, self.target)
        self.layers.append((layer, tile))
        kf = conv_kernel(layer, tile, self.target)
        if kf.signature not in self.added:
            self.added[kf.signature] = self.builder_.add_func(kf.func, kf.name)
        residual = self.visit_expr(chain.residual) if chain.residual is not None else relax.const(np.zeros(1, np.float32))
        consts = [relax.const(c) for c in conv_consts(weight, chain.bias, tile)]
        return relax.call_tir(
            self.added[kf.signature], [self.visit_expr(conv.args[0]), residual, *consts],
            out_ty=relax.TensorType(kf.out_shape, "float32"),
        )


def conv_layers(mod: tvm.IRModule) -> list[ConvLayer]:
    """The layers `dense_conv_module` would rewrite, found without building any kernel (for `tune`)."""
    return [
        chain.layer()
        for func in mod.functions.values()
        if isinstance(func, relax.Function)
        for chain in _Planner(func).chains().values()
    ]


def dense_conv_module(mod: tvm.IRModule, book: TileBook, target: Any) -> tuple[tvm.IRModule, list[tuple[ConvLayer, Any]]]:
    """Rewrite every eligible conv chain; returns the module and (layer, tile) per rewritten conv."""
    rewriter = _DenseConvRewriter(mod, book, target)
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            rewriter.plans = _Planner(func).chains()
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    out = relax.transform.DeadCodeElimination()(rewriter.builder_.get())
    return out, rewriter.layers
