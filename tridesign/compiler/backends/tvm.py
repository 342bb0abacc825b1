"""Apache TVM backend: ONNX → Relax → fused TIR (tuned where a MetaSchedule record exists) → module.

The chain follows TVM's own Relax pipeline stages (library dispatch, legalize + fuse, dataflow
lowering, finalize) with one insertion: between fusion and lowering, the tuning database is applied
to the fused kernels (tridesign.compiler.tuning), so `compile` reuses what `tune` measured. The
artifact holds `module.so` (or `module.tar` when a cross compiler is missing), `tvm_io.json` (input
and output names in call order, so the module runs without the ONNX file), and a copy of the tuning
database it was built with.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tridesign.compiler.backends.base import CompileResult, LayerTiming
from tridesign.compiler.options import CompileOptions
from tridesign.targets import TargetSpec, configure_tvm_runtime, cross_compiler_available, get_target
from tridesign.errors import TridesignError

IO_FILE = "tvm_io.json"
PREPACKED_SUFFIX = "_prepacked"  # TVM's name for a kernel reading weights in a tuned layout


def import_onnx(model: Any, batch: int) -> tuple[Any, dict[str, Any]]:
    """ONNX → Relax with fixed input shapes and the weights bound as constants.

    Fixed shapes let TVM specialise every kernel (and let MetaSchedule tune it); a symbolic batch
    axis takes `batch`, any other symbolic axis is refused. Unsupported operators are reported with
    the op type and the first node that uses it, which TVM's own message does not name.
    """
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    shapes: dict[str, list[int]] = {}
    dtypes: dict[str, str] = {}
    notes: list[str] = []
    for value in graph_inputs:
        tensor = value.type.tensor_type
        dims = []
        for axis, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif axis == 0:
                dims.append(batch)
                notes.append(f"input {value.name!r}: symbolic batch axis fixed to {batch}")
            else:
                raise TridesignError(
                    f"input {value.name!r} has a symbolic axis {axis} ({dim.dim_param or '?'}); "
                    "the TVM backend needs fixed shapes"
                )
        shapes[value.name] = dims
        dtypes[value.name] = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    try:
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except tvm.error.OpNotImplemented as err:
        unsupported = [n for n in model.graph.node if f" {n.op_type}" in f" {err}".replace(",", " ")]
        if not unsupported:
            raise TridesignError(f"TVM cannot import this model: {err}") from None
        node = unsupported[0]
        raise TridesignError(
            f"operator {node.op_type} (node {node.name or '<unnamed>'!r}) is not supported by TVM's ONNX importer"
        ) from None
    io = {
        "inputs": [{"name": n, "shape": shapes[n], "dtype": dtypes[n]} for n in shapes],
        "outputs": [o.name for o in model.graph.output],
        "notes": notes,
    }
    return mod, io


def backend_pipeline(target: Any) -> Any:
    """TVM's per-backend stage lists (the module behind relax.get_default_pipeline)."""
    kind = "cuda" if target.kind.name == "cuda" else "cpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{kind}.pipeline")


def lower_fused(mod: Any, target: Any) -> Any:
    """Relax → fused TIR PrimFuncs (the unit MetaSchedule tunes), before any scheduling.

    Weights are marked layout-free: a tuned CPU schedule may then read them in a blocked layout
    of its choosing (MetaSchedule's RewriteLayout), which `tuning.apply_database` repacks once at
    compile time. Without it every convolution reads OIHW weights with strided loads, and tuned
    ResNet-20 ran 2.5x slower at the same number of trials.
    """
    import tvm
    from tvm import relax

    passes = backend_pipeline(target).library_dispatch_passes(target) + [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target:
        return mark_constant_weights(tvm.transform.Sequential(passes)(mod))


def mark_constant_weights(mod: Any) -> Any:
    """Mark the parameters every call site feeds a constant as layout-free (`layout_free_buffers`).

    What relax.transform.AttachAttrLayoutFreeBuffers does for MetaSchedule's kernels, without
    touching hand-written kernels: that pass rewrites their signatures and loses the symbolic
    non-zero count of the sparse kernels (which pack their own weights anyway).
    """
    import tvm
    from tvm import relax

    handwritten = handwritten_kernels(mod)
    constant_params: dict[Any, set[int]] = {}
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if not isinstance(call, relax.Call) or getattr(call.op, "name", "") != "relax.call_tir":
                    continue
                callee, args = call.args[0], call.args[1].fields
                consts = {i for i, arg in enumerate(args) if isinstance(arg, tvm.ir.GenericConst)}
                constant_params[callee] = consts & constant_params.get(callee, consts)
    for callee, indices in constant_params.items():
        if indices and callee not in handwritten:
            mod[callee] = mod[callee].with_attr("layout_free_buffers", sorted(indices))
    return mod


def handwritten_kernels(mod: Any) -> dict[Any, Any]:
    """The PrimFuncs of tridesign.kernels (plain loops, no root block), which TVM's schedule and
    layout passes do not apply to; MetaSchedule's kernels all have a root block."""
    from tvm import s_tir, tirx

    return {
        gv: f for gv, f in mod.functions.items()
        if isinstance(f, tirx.PrimFunc) and not isinstance(f.body, s_tir.SBlockRealize)
    }


def finish(mod: Any, target: Any) -> Any:
    """Schedule what tuning left for GPUs (DLight), then TVM's dataflow-lowering and finalize stages."""
    import tvm
    from tvm import relax

    passes = []
    if target.kind.name == "cuda":
        from tvm.s_tir import dlight as dl

        passes.append(
            dl.ApplyDefaultSchedule(
                dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()
            )
        )
    stages = backend_pipeline(target)
    passes += stages.dataflow_lower_passes(target) + stages.finalize_passes(target)
    with target:
        return tvm.transform.Sequential(passes)(mod)


def export(executable: Any, spec: TargetSpec, out_dir: Path) -> tuple[str, list[str]]:
    """Write the compiled module; cross targets link with their cross compiler or fall back to .tar."""
    from tvm.support import cc

    notes: list[str] = []
    if spec.cross_compiler is None:
        name = "module.so"
        executable.export_library(str(out_dir / name))
    elif cross_compiler_available(spec):
        name = "module.so"
        executable.export_library(str(out_dir / name), fcompile=cc.cross_compiler(spec.cross_compiler))
    else:
        name = "module.tar"
        executable.export_library(str(out_dir / name))
        notes.append(
            f"{spec.cross_compiler} not found: wrote object files (module.tar); link them on the board, "
            "or install the cross toolchain (scripts/cross_root.sh) and compile again"
        )
    return name, notes


def sparsify(mod: Any, model: Any, target: Any, tuned: bool, notes: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    """Put pruned layers on the custom sparse kernels (CPU targets) where they beat dense.

    The crossover depends on what dense code they compete with: against tuned dense kernels only
    clearly sparse layers switch; against TVM's untuned defaults every annotated layer does.
    """
    from tridesign.annotations import read_weight_sparsity

    records = read_weight_sparsity(model)
    if not records:
        return mod, []
    if target.kind.name != "llvm":
        notes.append(f"sparse kernels are CPU-only: the {len(records)} pruned weights run dense on {target.kind.name}")
        return mod, []
    from tridesign.kernels.relax_integration import SparsePolicy, sparsify_module

    policy = SparsePolicy() if tuned else SparsePolicy.for_untuned_module()
    mod, layers = sparsify_module(mod, model, policy, records)
    decisions = [layer.as_dict() for layer in layers]
    pruned = sum(1 for layer in layers if layer.density is not None)  # the others have no record: dense
    notes.append(f"{sum(layer.sparse for layer in layers)} of {pruned} pruned layers run on sparse kernels")
    return mod, decisions


def dense_convs(mod: Any, target: Any, db_dir: Path, measure: bool, notes: list[str]) -> tuple[Any, dict[str, int]]:
    """Put ungrouped fp32 convolutions (and their bias/residual/ReLU) on the hand-written kernels.

    CPU targets only. Each layer runs with the tile and algorithm `tune` measured for it (conv_tiles.json in the
    target's database); `measure` times the candidates of layers not measured yet, here. Layers
    nobody measured use the default tile, and a note says how many.
    """
    if target.kind.name != "llvm":
        return mod, {}
    from tridesign.kernels.conv_tiles import TileBook
    from tridesign.kernels.relax_dense_conv import conv_layers, dense_conv_module

    book = TileBook.load(db_dir)
    todo = book.missing(conv_layers(mod)) if measure else []
    if todo:
        from tridesign.progress import step

        with step(f"measuring register tiles for {len(todo)} convolution shapes"):
            book.measure_missing(todo, target)
        book.save()
    mod, layers = dense_conv_module(mod, book, target)
    if book.defaulted:
        notes.append(
            f"{book.defaulted} of {len(layers)} convolutions use the default register tile "
            "(tridesign tune measures the best one per layer)"
        )
    return mod, {
        "dense_convs": len(layers),
        "winograd_convs": sum(1 for _, tile in layers if tile.winograd),
        "dense_conv_tiles_defaulted": book.defaulted,
        "dense_conv_shapes_measured": len(todo),
    }


def max_pools(mod: Any, target: Any, notes: list[str]) -> tuple[Any, dict[str, int]]:
    """Put max-pools on the hand-written kernel (CPU targets), which MetaSchedule cannot schedule.

    A pool the kernel does not cover (ceil mode, dilation, another layout) stays with TVM's
    legalized reduction, and a note says so.
    """
    if target.kind.name != "llvm":
        return mod, {}
    from tridesign.kernels.relax_max_pool import max_pool_module

    mod, rewritten, left = max_pool_module(mod)
    if left:
        notes.append(f"{left} max-pool(s) not covered by the hand-written kernel run on TVM's generic reduction")
    return mod, {"max_pools": rewritten}


def put_on_hand_written_kernels(
    mod: Any, model: Any, spec: TargetSpec, db_dir: Path, measure: bool, tuned: bool, notes: list[str]
) -> tuple[Any, dict[str, int], list[dict[str, Any]]]:
    """Pruned layers, convolutions and max-pools onto tridesign.kernels (CPU targets), before
    MetaSchedule sees the module; returns it, the counts, and the sparse-kernel decisions.

    `compile` and `tune` both call this, so the kernels left to MetaSchedule — and so the
    workloads its records are keyed by — are the same in both. `tuned`: whether the dense code the
    sparse kernels compete with is tuned (see `sparsify`).
    """
    target = spec.tvm_target()
    mod, sparse_layers = sparsify(mod, model, target, tuned, notes)
    mod, conv_report = dense_convs(mod, target, db_dir, measure, notes)
    mod, pool_report = max_pools(mod, target, notes)
    return mod, {**conv_report, **pool_report}, sparse_layers


class TvmSession:
    """A loaded TVM artifact: the Relax VM over the module, fed and read by ONNX names."""

    def __init__(self, artifact_dir: Path) -> None:
        import tvm
        from tvm import relax

        configure_tvm_runtime()
        io = json.loads((artifact_dir / IO_FILE).read_text())
        spec = get_target(io["target"]) if io["target"] != "host" else None
        if spec is not None and not spec.runs_here:
            raise TridesignError(
                f"artifact {artifact_dir} is built for {io['target']} and cannot run on this machine; "
                "run it on the board (tridesign profile --remote)"
            )
        module_path = artifact_dir / io["module"]
        if not module_path.exists():
            raise TridesignError(f"artifact {artifact_dir} has no {io['module']}")
        self.input_names: list[str] = [i["name"] for i in io["inputs"]]
        self.output_names: list[str] = list(io["outputs"])
        self._dtypes = {i["name"]: i["dtype"] for i in io["inputs"]}
        self.device = tvm.cuda(0) if spec is not None and spec.device is not None else tvm.cpu()
        self.module = tvm.runtime.load_module(str(module_path))
        self.vm = relax.VirtualMachine(self.module, self.device)
        self._staging: dict[str, tuple[np.ndarray, Any]] = {}

    def arguments(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        """The VM's arguments for `inputs`; on the CPU they alias this session's staging buffers."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise TridesignError(f"missing inputs: {', '.join(missing)} (the model takes {self.input_names})")
        return [self._argument(n, inputs[n]) for n in self.input_names]

    def _argument(self, name: str, array: np.ndarray) -> Any:
        """A CPU input is copied into a 64-byte-aligned buffer that a TVM tensor shares (DLPack).

        Why: a fresh `tvm.runtime.tensor` per call cost 23 µs for ResNet-20's 12 KB input and
        reading the output with `.numpy()` 10 µs, 6% of that network's 0.55 ms; the copy into the
        staging buffer costs 0.6 µs. A new shape (dynamic batch) gets its own buffer.
        """
        import tvm

        dtype = np.dtype(self._dtypes[name])
        if self.device.dlpack_device_type() != tvm.cpu().dlpack_device_type():
            return tvm.runtime.tensor(np.ascontiguousarray(array, dtype=dtype), self.device)
        array = np.asarray(array)
        staged = self._staging.get(name)
        if staged is None or staged[0].shape != array.shape:
            buffer = aligned_empty(array.shape, dtype)
            staged = self._staging[name] = (buffer, tvm.runtime.from_dlpack(buffer))
        np.copyto(staged[0], array, casting="unsafe")
        return staged[1]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = flatten(self.vm["main"](*self.arguments(inputs)))
        if len(outputs) != len(self.output_names):
            raise TridesignError(f"module returned {len(outputs)} outputs, expected {len(self.output_names)}")
        return dict(zip(self.output_names, outputs))


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary (TVM's DLPack import needs 64)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def flatten(value: Any) -> list[np.ndarray]:
    """VM results are a tensor or (nested) tuples of tensors; ONNX outputs are a flat list.

    CPU results are copied through a DLPack view (0.4 µs + the copy; `.numpy()` took 10 µs): a copy,
    because an output may be a module constant or an input's staging buffer.
    """
    if hasattr(value, "numpy"):
        if value.device.dlpack_device_type() == 1:  # kDLCPU
            return [np.from_dlpack(value).copy()]
        return [value.numpy()]
    return [array for item in value for array in flatten(item)]


def kernel_op_type(symbol: str) -> str:
    """`fused_conv2d3_add2_relu1` → `conv2d+add+relu`: the ops a fused kernel holds, without counters.

    The hand-written dense convs name their epilogue in their symbol (`dense_conv2d_<shape>_t8x16_res_relu`,
    `winograd_conv2d_<shape>_t16x16_relu`); the hand-written max-pool is `max_pool2d_<shape>_k3x3_s2x2_p1x1`.
    """
    if symbol.startswith("max_pool2d_"):
        return "max_pool2d"
    if symbol.startswith(("dense_conv2d_", "winograd_conv2d_")):
        epilogue = symbol.rstrip("0123456789").split("_t", 1)[-1]
        return "conv2d" + ("+add" if "_res" in epilogue else "") + ("+relu" if "_relu" in epilogue else "")
    parts = symbol.removeprefix("fused_").removesuffix(PREPACKED_SUFFIX).split("_")
    ops = [p.rstrip("0123456789") for p in parts]
    return "+".join(op for op in ops if op) or symbol


class TvmBackend:
    """ONNX → Relax → TVM module for a named target (tridesign.targets)."""

    name = "tvm"

    def available(self) -> str | None:
        try:
            import tvm  # noqa: F401
            from tvm import relax  # noqa: F401
        except ImportError as err:
            return f"apache-tvm is not importable ({err})"
        return None

    def compile(self, onnx_path: Path, out_dir: Path, options: CompileOptions) -> CompileResult:
        import onnx
        import tvm

        from tridesign.compiler import tuning

        configure_tvm_runtime()
        spec = get_target(options.target)
        target = spec.tvm_target()
        model = onnx.load(str(onnx_path))
        mod, io = import_onnx(model, batch=options.batch)
        notes: list[str] = list(io.pop("notes"))
        db_dir = Path(options.tuning_db) if options.tuning_db else tuning.default_db_dir(spec)
        mod, kernel_report, sparse_layers = put_on_hand_written_kernels(
            mod, model, spec, db_dir,
            measure=options.tune_trials > 0 and spec.runs_here,
            tuned=options.tune_trials > 0 or tuning.has_records(db_dir),
            notes=notes,
        )
        fused = lower_fused(mod, target)
        report: dict[str, Any] = {"database": str(db_dir), "trials": options.tune_trials, **kernel_report}
        if options.tune_trials > 0:
            report.update(tuning.tune(fused, spec, options.tune_trials, db_dir))
        fused, applied, total = tuning.apply_database(fused, target, db_dir)
        repacked = sum(1 for gv in fused.functions if gv.name_hint.endswith(PREPACKED_SUFFIX))
        report.update({"kernels": total, "kernels_tuned": applied, "kernels_with_repacked_weights": repacked})
        if options.tune_trials > 0 and applied == 0:
            notes.append(f"tuning ran {options.tune_trials} trials but produced no schedule; the module is untuned")
        elif applied == 0:
            notes.append("untuned: no MetaSchedule record for these kernels (tridesign tune, or --tune N)")
        elif applied < total:
            notes.append(f"{applied} of {total} kernels use tuned schedules; the rest use TVM's defaults")
        start = time.perf_counter()
        executable = tvm.compile(finish(fused, target), target)
        report["build_s"] = round(time.perf_counter() - start, 3)
        module_name, export_notes = export(executable, spec, out_dir)
        notes += export_notes
        files = [module_name, IO_FILE]
        if tuning.has_records(db_dir):  # the records this build saw, so it can be reproduced from the artifact
            files += tuning.copy_database(db_dir, out_dir / "tuning", relative_to=out_dir)
        (out_dir / IO_FILE).write_text(json.dumps({"target": spec.name, "module": module_name, **io}, indent=2))
        return CompileResult(
            files=files,
            target={"name": spec.name, "tvm": spec.tvm_json(), "cross_compiler": spec.cross_compiler},
            tuned=applied > 0,
            tuning=report,
            notes=notes,
            sparse_layers=sparse_layers,
        )

    def load(self, artifact_dir: Path, manifest: dict[str, Any]) -> TvmSession:
        return TvmSession(Path(artifact_dir))

    def profile_layers(
        self, artifact_dir: Path, manifest: dict[str, Any], inputs: dict[str, np.ndarray], repeat: int
    ) -> list[LayerTiming]:
        """Time every kernel call of the VM through its instrument hook (before/after each call).

        A kernel called at several places (a repeated residual block) is reported per call site, so
        the table shows where in the network time goes, not just which code is slow.
        """
        session = TvmSession(Path(artifact_dir))
        args = session.arguments(inputs)
        samples: dict[str, list[float]] = {}
        state: dict[str, Any] = {"start": 0.0, "seen": {}}

        def instrument(func: Any, symbol: str, before_run: bool, ret: Any, *call_args: Any) -> int:
            if symbol.startswith("vm.builtin."):
                return 0
            if before_run:
                session.device.sync()
                state["start"] = time.perf_counter()
                return 0
            session.device.sync()  # GPU kernels launch asynchronously: time them to completion
            elapsed = time.perf_counter() - state["start"]
            count = state["seen"].get(symbol, 0)
            state["seen"][symbol] = count + 1
            site = symbol if count == 0 else f"{symbol}#{count}"
            samples.setdefault(site, []).append(elapsed)
            return 0

        session.vm["main"](*args)  # warm-up outside the measurement
        session.vm.set_instrument(instrument)
        for _ in range(max(1, repeat)):
            state["seen"] = {}
            session.vm["main"](*args)
        session.vm.set_instrument(None)
        timings = [
            LayerTiming(name=site, op_type=kernel_op_type(site.split("#")[0]), ms=float(np.median(t)) * 1e3)
            for site, t in samples.items()
        ]
        return sorted(timings, key=lambda t: t.ms, reverse=True)
