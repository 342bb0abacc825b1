"""Put the sparse kernels into a Relax module: eligible conv2d/matmul → `call_tir` on packed weights.

Input: the IRModule `from_onnx(model, keep_params_in_input=False)` builds (weights are Relax
constants) and the weight-sparsity records of the same ONNX model. Constants are matched to
initializer names by content (the importer drops names; Gemm's weight appears behind a
`permute_dims`, which is matched too). Each matched layer is rewritten when it is sparse enough:

- `nn.conv2d` (NCHW/OIHW, symmetric padding, static shapes) → the direct sparse conv (`tir_conv`);
- `matmul(x, Wᵀ)` (Linear/Gemm) and `matmul(x, W)` (MatMul) → BSR × dense (`tir_bsr`, block shape
  from the record's `block:RxC` pattern, else 1×1) or the 2:4 kernel (`tir_nm`) for `nm:2:4`,
  computed as Wᵀ-side · xᵀ with the activation transposed around the call.

Crossover (the rule that keeps dense): `benchmarks/sparse_kernels.py` measured our kernels
against ONNX Runtime dense on zoo shapes; they win from ~55–60 % sparsity on (see BENCHMARKS.md).
The default policy therefore rewrites a layer only at density ≤ 0.4 (sparsity ≥ 60 %), and N:M
only for matmuls with N/M ≤ 0.4 (2:4 is 50 % dense and stays dense): that is right when the dense
layers are tuned (MetaSchedule) and so compete with ORT-class speed. In an *untuned* module the
dense alternative is TVM's default schedule (~25–100× slower than ORT), which every kernel beats
at any density: use `SparsePolicy.for_untuned_module()` there.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import tvm
from onnx import numpy_helper
from tvm import relax

from tridesign import sparsity_plan
from tridesign.annotations import WeightSparsity, read_weight_sparsity
from tridesign.kernels.formats import BSR, NM
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.runtime import KernelFunc
from tridesign.kernels.tir_bsr import bsr_matmul_func
from tridesign.kernels.tir_conv import sparse_conv2d_consts, sparse_conv2d_func
from tridesign.kernels.tir_nm import nm_matmul_func


@dataclass(frozen=True)
class SparsePolicy:
    """When a layer runs sparse: at or below `max_density` (fraction of non-zeros kept).

    Matmuls whose dense dimension (tokens × batch) is below `narrow_n` fill few vector lanes and
    measured a much later crossover (~90 % sparsity for a 2048×512 GEMM on 49 columns), so they
    must reach `max_density_narrow`.
    """

    max_density: float = 0.4
    max_density_narrow: float = 0.1
    narrow_n: int = 64
    max_density_conv: float | None = None  # None: the same as max_density

    @classmethod
    def for_untuned_module(cls) -> SparsePolicy:
        """Every annotated matmul sparse: the dense alternative inside an *untuned* TVM module is
        TVM's default schedule, measured 25–100× slower than these kernels even at 50 % sparsity.
        Convolutions keep the measured crossover: on CPU targets their dense alternative is the
        register-tiled kernel (tir_dense_conv), fast without any tuning."""
        return cls(max_density=1.0, max_density_narrow=1.0, max_density_conv=cls.max_density)

    def threshold(self, op: str) -> float:
        return self.max_density_conv if op == "conv2d" and self.max_density_conv is not None else self.max_density


@dataclass(frozen=True)
class LayerDecision:
    """One row of the per-layer report: what ran sparse, and why not otherwise."""

    weight: str  # initializer name, or "<unnamed constant>"
    op: str  # conv2d | linear | matmul
    pattern: str
    density: float | None
    sparse: bool
    kernel: str  # the TIR kernel name, or "" when dense
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _digest(array: np.ndarray) -> str:
    arr = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha1(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _annotated_weights(model: onnx.ModelProto, records: dict[str, WeightSparsity]) -> dict[str, tuple[str, np.ndarray]]:
    """content digest → (initializer name, masked weight) for every annotated initializer."""
    out = {}
    for init in model.graph.initializer:
        if init.name in records:
            weight = numpy_helper.to_array(init).astype(np.float32)
            mask = records[init.name].decoded_mask()
            masked = weight * mask if mask is not None and mask.shape == weight.shape else weight
            out[_digest(weight)] = (init.name, masked)
    return out


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The static shape of a Relax tensor expression, None when any axis is symbolic."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = ty.shape.values
    if not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
        return None
    return tuple(int(d) for d in dims)


@relax.expr_functor.mutator
class _SparseRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, weights: dict, records: dict[str, WeightSparsity], policy: SparsePolicy):
        super().__init__(mod)
        self.weights, self.records, self.policy = weights, records, policy
        self.bindings: dict[relax.Var, relax.Expr] = {}
        self.decisions: list[LayerDecision] = []
        self.added: dict[tuple, tvm.ir.GlobalVar] = {}

    def collect_bindings(self, func: relax.Function) -> None:
        for block in func.body.blocks:
            for binding in block.bindings:
                self.bindings[binding.var] = binding.value

    def _constant(self, expr: relax.Expr) -> tuple[tvm.ir.GenericConst | None, bool]:
        """The constant weight behind `expr` and whether it sits behind a 2-D transpose."""
        if isinstance(expr, relax.Var) and expr in self.bindings:
            expr = self.bindings[expr]
        if isinstance(expr, tvm.ir.GenericConst):
            return expr, False
        if isinstance(expr, relax.Call) and expr.op.name == "relax.permute_dims":
            inner = expr.args[0]
            inner = self.bindings.get(inner, inner) if isinstance(inner, relax.Var) else inner
            axes = expr.attrs.axes
            if isinstance(inner, tvm.ir.GenericConst) and len(inner.value.shape) == 2 and (axes is None or list(axes) == [1, 0]):
                return inner, True
        return None, False

    def _kernel_call(self, kf: KernelFunc, args: list[relax.Expr], consts: list[np.ndarray]) -> relax.Expr:
        if kf.signature not in self.added:
            self.added[kf.signature] = self.builder_.add_func(kf.func, kf.name)
        return relax.call_tir(
            self.added[kf.signature], [*args, *(relax.const(c) for c in consts)],
            out_ty=relax.TensorType(kf.out_shape, "float32"),
        )

    def _decide(self, const: tvm.ir.GenericConst, op: str) -> tuple[str, np.ndarray | None, WeightSparsity | None, str]:
        """(weight name, masked weight or None, record, reason when dense)."""
        hit = self.weights.get(_digest(const.value.numpy()))
        if hit is None:
            return "<unnamed constant>", None, None, "no sparsity record for this weight"
        name, weight = hit
        rec = self.records[name]
        limit = self.policy.threshold(op)
        if rec.density > limit:
            return name, None, rec, f"density {rec.density:.2f} > crossover {limit:.2f}: dense is faster"
        return name, weight, rec, ""

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.nn.conv2d", "relax.matmul"):
            return super().visit_call_(call)
        const, transposed = self._constant(call.args[1])
        if const is None:
            return super().visit_call_(call)
        op = "conv2d" if call.op.name == "relax.nn.conv2d" else ("linear" if transposed else "matmul")
        # ungrouped convs compete with the register-tiled dense kernel; grouped ones with TVM's schedule
        kind = "grouped_conv2d" if op == "conv2d" and int(call.attrs.groups) != 1 else op
        name, weight, rec, reason = self._decide(const, kind)
        x = self.visit_expr(call.args[0])
        x_shape = static_shape(call.args[0])
        if weight is not None and x_shape is None:
            reason, weight = "dynamic input shape", None
        rewritten = None
        if weight is not None:
            rewritten, reason = (self._conv(call, x, x_shape, weight) if op == "conv2d"
                                 else self._matmul(x, x_shape, weight, transposed, rec))
        if rewritten is None:
            self.decisions.append(LayerDecision(name, op, rec.pattern if rec else "", rec.density if rec else None,
                                                False, "", reason))
            return super().visit_call_(call)
        self.decisions.append(LayerDecision(name, op, rec.pattern, rec.density, True, reason, "sparse kernel"))
        return rewritten

    def _conv(self, call: relax.Call, x: relax.Expr, x_shape: tuple[int, ...], weight: np.ndarray):
        attrs = call.attrs
        pad = [int(p) for p in attrs.padding]
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or pad[:2] != pad[2:]:
            return None, "unsupported layout or asymmetric padding"
        geom = ConvGeometry(tuple(int(s) for s in attrs.strides), (pad[0], pad[1]),
                            tuple(int(d) for d in attrs.dilation), int(attrs.groups))
        kf = sparse_conv2d_func(x_shape, weight.shape, geom)
        return self._kernel_call(kf, [x], sparse_conv2d_consts(weight, x_shape, geom)), kf.name

    def _matmul(self, x: relax.Expr, x_shape: tuple[int, ...], weight: np.ndarray, transposed: bool, rec: WeightSparsity):
        w_rows = weight if transposed else weight.T  # [M out, K in]
        m, k = w_rows.shape
        n = int(np.prod(x_shape[:-1]))
        if n < self.policy.narrow_n and rec.density > self.policy.max_density_narrow:
            return None, (f"density {rec.density:.2f} > crossover {self.policy.max_density_narrow:.2f} "
                          f"for a narrow matmul (N={n} < {self.policy.narrow_n})")
        emit = self.builder_.emit
        xt = emit(relax.op.permute_dims(emit(relax.op.reshape(x, (n, k))), [1, 0]))
        method = rec.method_record()
        if isinstance(method, sparsity_plan.NM):
            keep, group = method.n, method.m
            if keep / group > self.policy.max_density:
                return None, f"{rec.pattern} density {keep / group:.2f} > crossover {self.policy.max_density:.2f}"
            packed = NM.pack(w_rows, keep, group)
            kf = nm_matmul_func(m, k, n, keep, group)
            yt = emit(self._kernel_call(kf, [xt], [packed.values, packed.indices]))
        else:
            block = method.shape if isinstance(method, sparsity_plan.Block) else (1, 1)  # 1×1: CSR-like, any mask
            bsr = BSR.pack(w_rows, block if transposed else block[::-1])  # the record's block is on W as stored
            kf = bsr_matmul_func(m, k, n, bsr.block)
            consts = [bsr.indptr, bsr.indices, bsr.data]
            if bsr.nnz_blocks == 0:
                consts = [bsr.indptr, np.zeros(1, np.int32), np.zeros((1, *bsr.block), np.float32)]
            yt = emit(self._kernel_call(kf, [xt], consts))
        return relax.op.reshape(emit(relax.op.permute_dims(yt, [1, 0])), (*x_shape[:-1], m)), kf.name


def sparsify_module(
    mod: tvm.IRModule,
    onnx_model: onnx.ModelProto,
    policy: SparsePolicy | None = None,
    records: dict[str, WeightSparsity] | None = None,
) -> tuple[tvm.IRModule, list[LayerDecision]]:
    """Rewrite eligible layers of `mod` to sparse kernels; returns the module and the per-layer report.

    `records` defaults to the model's own annotation (`read_weight_sparsity`). Layers without a
    record stay dense and are reported as such, so the report lists every conv2d/matmul on a weight.
    """
    policy = policy or SparsePolicy()
    records = read_weight_sparsity(onnx_model) if records is None else records
    rewriter = _SparseRewriter(mod, _annotated_weights(onnx_model, records), records, policy)
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            rewriter.collect_bindings(func)
            new_func = rewriter.visit_expr(func)
            rewriter.builder_.update_func(gvar, new_func)
    out = relax.transform.DeadCodeElimination()(rewriter.builder_.get())
    return out, rewriter.decisions
