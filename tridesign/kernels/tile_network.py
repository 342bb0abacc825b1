"""Run a patch-masked detector on TVM with the masked computation really skipped.

The tri-design detector's ONNX graph multiplies the output of every backbone convolution (and the
max-pool) by the patch mask, nearest-resized to that feature map (`tridesign.kernels.mask_macs`).
`TileSparseNetwork` imports the graph into Relax (weights as constants, Shape/Slice/Concat
plumbing folded by the importer at load) and rewrites every such chain

    conv2d → add(bias) → multiply(resized mask) [→ add(residual)] [→ relu]

into one call of a masked kernel (`tridesign.kernels.tir_masked_conv`) that reads the resized mask
at run time, computes only the output pixels it keeps, and applies bias, mask, residual and ReLU
before its single store; a dropped pixel gets the epilogue of zero without a multiply-accumulate.

The tile, per layer: skipping is decided per output pixel, which is finer than the mask's cells at
every resolution (16×16 input pixels are 8×8 output pixels at stride 2, 4×4 at 4, 2×2 at 8, one at
16, every second cell at 32), so a tile is exactly one cell there. What a core computes at once is
chosen for the registers, not the cells: with dense weights the active pixels are gathered into
groups of P = 12 (16-channel layers: one vector of channels) or 6 (32 and more: two vectors), at
any positions, so a group is as efficient as a dense tile wherever the active pixels lie (larger P
was measured slower: the accumulators then leave the registers); with pruned weights (CSR, at
most `sparse_max_density` non-zeros) runs of 16 consecutive output pixels start at active pixels,
8 runs at a time, which also skips the zero weights. Pruned FPN and head convolutions use the CSR
kernel without a mask. Inactive pixels are not computed; the kernel's zero-padded input copy reads
the input rows between the first and the last active pixel (whole rows, a small fraction of the
work), so dropped rows at the top or bottom are not read either.

The remaining convolutions (FPN, head) run on the register-tiled dense kernel with their
bias/residual/ReLU fused (`relax_dense_conv`), the max-pool on its kernel, and the rest (resize,
the max-pool's mask product, FPN additions) on TVM's legalized operators. The whole frame is one
call of a compiled Relax VM: no Python between layers.

Kernels are built once per layer signature at construction (`build_s` says how long it took).
`run` returns what ONNX Runtime returns for the graph, to fp32 rounding. `macs` reports dense and
active MACs (`mask_macs.conv_macs`) and what this executor computed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import tvm
from onnx import numpy_helper
from tvm import relax

from tridesign.board.tvm_module import configure_tvm_runtime
from tridesign.errors import TridesignError
from tridesign.kernels.conv_tiles import TileBook, vector_floats
from tridesign.kernels.mask_macs import ConvSite, conv_macs, conv_sites, layer_mask
from tridesign.kernels.reference import ConvGeometry
from tridesign.kernels.relax_dense_conv import dense_conv_module, eligible_conv
from tridesign.kernels.relax_integration import static_shape
from tridesign.kernels.relax_max_pool import max_pool_module
from tridesign.kernels.tir_masked_conv import (
    PixelTile,
    RunLayout,
    RunTile,
    masked_conv2d_consts,
    masked_conv2d_func,
    masked_sparse_conv2d_consts,
    masked_sparse_conv2d_func,
    pixel_tile,
    run_tile,
)
from tridesign.targets import tvm_target

# A pruned weight runs sparse at this density or below: the CSR kernels then beat the dense ones
# (the crossover `relax_integration.SparsePolicy` uses for convolutions).
SPARSE_MAX_DENSITY = 0.4


@dataclass(frozen=True)
class ConvPlan:
    """How one Conv node runs: `masked` (dense weights, pixel groups of `tile`), `masked_csr`
    (CSR weights, runs of `tile`), `csr` (CSR weights, no mask) or `dense` (every pixel)."""

    node: str
    kernel: str
    tile: PixelTile | RunTile | None
    nnz: int  # non-zero weights
    site: ConvSite
    layout: RunLayout | None = None  # where a CSR kernel's runs lie

    def computed(self, pixel_mask: np.ndarray | None, runs: dict | None = None) -> int:
        """MACs the kernel computes for this layer's (OH, OW) keep-mask (None: unmasked): whole pixel
        groups or runs, non-zeros only for CSR weights (lanes past a row's end included); every
        dense MAC for `dense`. `runs` memoises run counts across layers of one frame."""
        oh, ow = self.site.out_hw
        if self.kernel == "dense":
            return self.site.macs
        if self.kernel == "masked":
            active = int(pixel_mask.sum())
            return -(-active // self.tile.pixels) * self.tile.pixels * (self.site.macs // (oh * ow))
        mask = pixel_mask if self.kernel == "masked_csr" else None
        key = (self.layout, mask is not None)
        runs = {} if runs is None else runs
        if key not in runs:
            runs[key] = self.layout.computed_pixels(mask)
        return runs[key] * self.nnz


def _digest(array: np.ndarray) -> str:
    arr = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha1(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _import(model: onnx.ModelProto) -> tuple[tvm.IRModule, list[str], list[str]]:
    """ONNX → Relax with the graph's own (static) input shapes; unsupported operators refused by name."""
    from tvm.relax.frontend.onnx import from_onnx

    initializers = {i.name for i in model.graph.initializer}
    shapes, dtypes = {}, {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if any(d is None or d <= 0 for d in dims):
            raise TridesignError(f"input {value.name!r} has a symbolic shape {dims}; the tile-sparse executor needs fixed shapes")
        shapes[value.name] = dims
        dtypes[value.name] = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
    try:
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except tvm.error.OpNotImplemented as err:
        text = f" {err}".replace(",", " ")
        node = next((n for n in model.graph.node if f" {n.op_type}" in text), None)
        if node is None:
            raise TridesignError(f"the tile-sparse executor cannot import this model: {err}") from None
        raise TridesignError(
            f"the tile-sparse executor cannot run operator {node.op_type} (node {node.name or '<unnamed>'!r})"
        ) from None
    return mod, list(shapes), [o.name for o in model.graph.output]


def _op(value: Any, name: str) -> bool:
    return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == name


@dataclass
class _Chain:
    conv: relax.Call
    bias: np.ndarray | None = None
    mask: relax.Expr | None = None
    residual: relax.Expr | None = None
    relu: bool = False


class _Planner:
    """Each eligible conv's absorbable chain, from the bindings and their users (as relax_dense_conv)."""

    def __init__(self, func: relax.Function, mask_param: relax.Var | None) -> None:
        self.values: dict[relax.Var, relax.Expr] = {}
        self.users: dict[relax.Var, list[relax.Var]] = {}
        self.mask_param = mask_param
        for block in func.body.blocks:
            for binding in block.bindings:
                self.values[binding.var] = binding.value
                for used in relax.analysis.free_vars(binding.value):
                    self.users.setdefault(used, []).append(binding.var)
        for var in relax.analysis.free_vars(func.body.body):
            self.users.setdefault(var, []).append(var)

    def _next(self, var: relax.Var) -> tuple[relax.Var, relax.Call] | None:
        users = self.users.get(var, [])
        if len(users) != 1 or not isinstance(var, relax.DataflowVar):
            return None
        value = self.values.get(users[0])
        return (users[0], value) if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else None

    def _bias(self, operand: relax.Expr, channels: int) -> np.ndarray | None:
        value = self.values.get(operand, operand) if isinstance(operand, relax.Var) else operand
        if _op(value, "relax.reshape"):
            value = value.args[0]
        shape = static_shape(operand)
        if not isinstance(value, tvm.ir.GenericConst) or shape is None:
            return None
        array = value.value.numpy()
        if array.dtype != np.float32 or array.size != channels or shape[-3:] != (channels, 1, 1):
            return None
        return array.reshape(channels)

    def _is_mask(self, operand: relax.Expr, out_hw: tuple[int, int]) -> bool:
        """The mask input, or a nearest (asymmetric, floor) resize of it, at this feature map's size."""
        if self.mask_param is None or static_shape(operand) != (1, 1, *out_hw):
            return False
        value = self.values.get(operand, operand) if isinstance(operand, relax.Var) else operand
        if _op(value, "relax.image.resize2d"):
            attrs = value.attrs
            if (
                attrs.method != "nearest_neighbor"
                or attrs.coordinate_transformation_mode != "asymmetric"
                or attrs.rounding_method != "floor"
                or attrs.layout != "NCHW"
            ):
                return False
            value = value.args[0]
        return value.same_as(self.mask_param)

    def chains(self) -> dict[relax.Var, tuple[_Chain, list[relax.Var]]]:
        """Binding var of each eligible conv → (its chain, the bindings the chain absorbs, in order)."""
        out = {}
        claimed: set[relax.Var] = set()
        for var, value in self.values.items():
            if not _eligible(value):
                continue
            chain, absorbed = _Chain(value), [var]
            channels = int(value.args[1].value.shape[0])
            shape = static_shape(value)
            step = self._next(var)
            if step and _op(step[1], "relax.add"):
                other = step[1].args[1] if step[1].args[0].same_as(absorbed[-1]) else step[1].args[0]
                bias = self._bias(other, channels)
                if bias is not None and step[0] not in claimed:
                    chain.bias = bias
                    absorbed.append(step[0])
                    step = self._next(step[0])
            if step and _op(step[1], "relax.multiply") and step[0] not in claimed:
                other = step[1].args[1] if step[1].args[0].same_as(absorbed[-1]) else step[1].args[0]
                if self._is_mask(other, shape[2:]):
                    chain.mask = other
                    absorbed.append(step[0])
                    step = self._next(step[0])
            if step and _op(step[1], "relax.add") and step[0] not in claimed:
                other = step[1].args[1] if step[1].args[0].same_as(absorbed[-1]) else step[1].args[0]
                if isinstance(other, relax.Var) and static_shape(other) == shape and str(other.ty.dtype) == "float32":
                    chain.residual = other
                    absorbed.append(step[0])
                    step = self._next(step[0])
            if step and _op(step[1], "relax.nn.relu") and step[0] not in claimed:
                chain.relu = True
                absorbed.append(step[0])
            out[var] = (chain, absorbed)
            claimed.update(absorbed)
        return out


def _eligible(value: relax.Expr) -> bool:
    """A conv the hand-written kernels take, at batch 1 (one video frame)."""
    return eligible_conv(value) and static_shape(value.args[0])[0] == 1


@relax.expr_functor.mutator
class _TileRewriter(relax.PyExprMutator):
    """Replace each planned chain's last binding with one masked (or CSR) kernel call."""

    def __init__(self, mod: tvm.IRModule, target: Any, sparse_max_density: float) -> None:
        super().__init__(mod)
        self.target, self.sparse_max_density = target, sparse_max_density
        self.cores = int(target.attrs.get("num-cores", 1))
        self.floats = vector_floats(target)
        self.ends: dict[relax.Var, _Chain] = {}
        self.added: dict[tuple, tvm.ir.GlobalVar] = {}
        self.decisions: dict[str, list[tuple]] = {}  # weight digest → (kernel, tile, nnz, run layout)

    def plan(self, func: relax.Function, mask_param: relax.Var | None) -> None:
        """Choose the chains to rewrite: every masked conv, and unmasked ones with pruned weights."""
        self.ends = {}
        for chain, absorbed in _Planner(func, mask_param).chains().values():
            weight = chain.conv.args[1].value.numpy()
            sparse = np.count_nonzero(weight) <= self.sparse_max_density * weight.size
            if chain.mask is None and not sparse:
                continue  # dense and unmasked: the register-tiled dense kernel's job
            self.ends[absorbed[-1]] = chain

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        chain = self.ends.get(binding.var)
        if chain is None:
            super().visit_var_binding_(binding)
            return
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        self.set_var_remap(binding.var, emit(self._call(chain)))

    def _call(self, chain: _Chain) -> relax.Expr:
        conv = chain.conv
        weight = conv.args[1].value.numpy()
        x_shape = static_shape(conv.args[0])
        pad = [int(p) for p in conv.attrs.padding]
        geom = ConvGeometry(tuple(int(s) for s in conv.attrs.strides), (pad[0], pad[1]), tuple(int(d) for d in conv.attrs.dilation), 1)
        nnz = int(np.count_nonzero(weight))
        placeholder = relax.const(np.zeros(1, np.float32))
        masked = chain.mask is not None
        if nnz <= self.sparse_max_density * weight.size:
            tile = run_tile(self.floats)
            kf = masked_sparse_conv2d_func(x_shape, weight.shape, geom, tile, masked, chain.relu, chain.residual is not None)
            consts = masked_sparse_conv2d_consts(weight, chain.bias, x_shape, geom)
            kind, layout = ("masked_csr" if masked else "csr"), RunLayout.of(x_shape, weight.shape, geom, tile)
        else:
            tile = pixel_tile(weight.shape[0], self.floats)
            kf = masked_conv2d_func(x_shape, weight.shape, geom, tile, chain.relu, chain.residual is not None, self.cores)
            consts = masked_conv2d_consts(weight, chain.bias, tile)
            kind, layout = "masked", None
        self.decisions.setdefault(_digest(weight), []).append((kind, tile, nnz, layout))
        if kf.signature not in self.added:
            self.added[kf.signature] = self.builder_.add_func(kf.func, kf.name)
        args = [
            self.visit_expr(conv.args[0]),
            self.visit_expr(chain.mask) if masked else placeholder,
            self.visit_expr(chain.residual) if chain.residual is not None else placeholder,
            *(relax.const(c) for c in consts),
        ]
        return relax.call_tir(self.added[kf.signature], args, out_ty=relax.TensorType(kf.out_shape, "float32"))


def tile_sparse_module(
    mod: tvm.IRModule, mask_input: str, target: Any, sparse_max_density: float = SPARSE_MAX_DENSITY
) -> tuple[tvm.IRModule, dict[str, list[tuple]]]:
    """Rewrite masked conv chains (and pruned unmasked ones) of `main`; returns the module and,
    per weight digest, the kernels chosen (kind, tile, non-zeros, run layout) in program order."""
    rewriter = _TileRewriter(mod, target, sparse_max_density)
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mask_param = next((p for p in func.params if p.name == mask_input), None)
            rewriter.plan(func, mask_param)
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    return relax.transform.DeadCodeElimination()(rewriter.builder_.get()), rewriter.decisions


class TileSparseNetwork:
    """A patch-masked ONNX detector compiled for the CPU with the masked work skipped (module doc)."""

    def __init__(
        self,
        model: onnx.ModelProto,
        target: Any = None,
        mask_input: str = "patch_mask",
        sparse_max_density: float = SPARSE_MAX_DENSITY,
    ) -> None:
        start = time.perf_counter()
        configure_tvm_runtime()
        self.target = target if target is not None else tvm_target("host")
        if self.target.kind.name != "llvm":
            raise TridesignError(f"the tile-sparse executor runs on CPU targets, not {self.target.kind.name}")
        self.model, self.mask_input = model, mask_input
        self.sites = conv_sites(model, mask_input)
        mod, self.input_names, self.output_names = _import(model)
        if mask_input not in self.input_names or len(self.input_names) != 2:
            raise TridesignError(
                f"the tile-sparse executor runs a detector with an image and a {mask_input!r} input; "
                f"this model's inputs are {', '.join(self.input_names)}"
            )
        mod, decisions = tile_sparse_module(mod, mask_input, self.target, sparse_max_density)
        mod, _ = dense_conv_module(mod, TileBook(None), self.target)
        mod, _, _ = max_pool_module(mod)
        self.plans = self._plans(decisions)
        unskipped = [p.node for p in self.plans if p.site.mask is not None and p.kernel == "dense"]
        if unskipped:
            raise TridesignError(f"masked convolution {unskipped[0]!r} has no tile-sparse kernel (grouped, strided >2 or not fp32)")
        self._vm = relax.VirtualMachine(tvm.compile(mod, self.target), tvm.cpu())
        self._inputs = {
            name: tvm.runtime.tensor(np.zeros(shape, np.float32))
            for name, shape in zip(self.input_names, self._input_shapes())
        }
        self.build_s = time.perf_counter() - start

    def _input_shapes(self) -> list[tuple[int, ...]]:
        by_name = {v.name: v for v in self.model.graph.input}
        return [tuple(d.dim_value for d in by_name[n].type.tensor_type.shape.dim) for n in self.input_names]

    def _plans(self, decisions: dict[str, list[tuple]]) -> list[ConvPlan]:
        weights = {i.name: i for i in self.model.graph.initializer}
        plans = []
        for site in self.sites:
            array = numpy_helper.to_array(weights[site.weight]) if site.weight in weights else None
            queue = decisions.get(_digest(array), []) if array is not None else []
            weights_count = site.macs // (site.out_hw[0] * site.out_hw[1])  # batch 1
            kind, tile, nnz, layout = queue.pop(0) if queue else (
                "dense", None, int(np.count_nonzero(array)) if array is not None else weights_count, None)
            plans.append(ConvPlan(site.node, kind, tile, nnz, site, layout))
        return plans

    def run(self, image: np.ndarray, patch_mask: np.ndarray) -> dict[str, np.ndarray]:
        """One frame: the graph's outputs by name, as ONNX Runtime computes them (to fp32 rounding)."""
        for name in self.input_names:
            self._inputs[name].copyfrom(np.ascontiguousarray(patch_mask if name == self.mask_input else image, np.float32))
        out = self._vm["main"](*(self._inputs[n] for n in self.input_names))
        outs = out if len(self.output_names) > 1 else [out]
        return {name: o.numpy() for name, o in zip(self.output_names, outs)}

    def macs(self, patch_mask: np.ndarray) -> dict:
        """`conv_macs` (dense, active, per layer) plus `computed`: what this executor computes for
        the mask — whole pixel groups / runs of the masked kernels, non-zero weights only where a
        layer runs on CSR, dense MACs for the dense kernels — and each layer's kernel."""
        report = conv_macs(self.model, patch_mask, self.mask_input, self.sites)
        masks: dict[tuple[int, int], np.ndarray] = {}
        runs: dict = {}
        for layer, plan in zip(report["layers"], self.plans):
            hw = plan.site.out_hw
            if hw not in masks:
                masks[hw] = layer_mask(patch_mask, hw)
            layer["kernel"] = plan.kernel
            layer["tile"] = plan.tile.label if plan.tile is not None else ""
            layer["weight_density"] = plan.nnz / max(1, plan.site.macs // (hw[0] * hw[1]))
            layer["computed"] = plan.computed(masks[hw], runs)
        report["computed"] = sum(layer["computed"] for layer in report["layers"])
        return report
