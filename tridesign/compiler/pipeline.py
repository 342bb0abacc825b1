"""The compile pipeline: source -> verified ONNX -> backend artifact -> verification -> manifest.

SOURCE (tridesign.artifact.open_source) is a registered model (built in torch, exported and
verified against torch), any ONNX file a user brings (normalized: opset upgrade, constant folding,
shape inference), or an artifact directory, whose model.onnx is compiled again. The artifact is
built in a temporary directory and renamed into place only once the backend's outputs match ONNX
Runtime on the compiled graph, so a directory on disk is always complete and verified.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.markup import escape

from tridesign import __version__
from tridesign.artifact import (
    FP32_FILE,
    INPUTS_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    Manifest,
    OnnxSource,
    RegisteredSource,
    TargetRecord,
    TensorSpec,
    Verification,
    open_source,
    write_manifest,
)
from tridesign.annotations import read_weight_sparsity
from tridesign.atomic import atomic_dir, check_writable_parent
from tridesign.board.check import sha256_file
from tridesign.compiler import evaluate, onnx_io, passes
from tridesign.compiler.backends import get_backend
from tridesign.compiler.export import export_verified
from tridesign.compiler.options import CompileOptions
from tridesign.compiler.user_data import UserData, UserInputs, load_user_data
from tridesign.errors import TridesignError, UsageError
from tridesign.models.registry import get_model
from tridesign.progress import stderr, step
from tridesign.targets import get_target
from tridesign.verification import output_steps, run_onnxruntime, verify


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "tridesign": __version__}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


# (normalized, pruned ONNX; verification inputs; calibration inputs; where it came from; the graph
# before pruning, or None when not asked for)
Source = tuple[
    onnx.ModelProto, dict[str, np.ndarray], list[dict[str, np.ndarray]], RegisteredSource | OnnxSource, onnx.ModelProto | None
]


def resolve_source(source: str, options: CompileOptions, keep_dense: bool = False) -> Source:
    """SOURCE -> (normalized, pruned ONNX; verification inputs; calibration inputs; where it came from;
    with `keep_dense` the same graph unpruned, the reference `--eval-data` scores against).

    An artifact directory compiles its model.onnx again (e.g. for another backend or target).
    A user's ONNX gets `options.input_shapes` fixed in the graph; the symbolic dims left are sized
    by `onnx_io.random_inputs`' rule in the example inputs, said on stderr one line per input.
    """
    opened = open_source(source)
    if opened.onnx_path is not None:
        path = opened.onnx_path
        passes.check_options(options, registered=False)
        with step(f"loading {path.name}"):
            model = onnx_io.load_onnx(path)
            original_opset = onnx_io.default_opset(model)
            model = onnx_io.normalize(model, dict(options.input_shapes))
        signature = onnx_io.io_signature(model)
        check_fixed_shapes(signature["inputs"], options)
        for note in onnx_io.defaulted_dims_notes(signature["inputs"], options.batch):
            stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)

        def make_inputs(seed: int) -> dict[str, np.ndarray]:
            return onnx_io.random_inputs(signature["inputs"], seed, options.batch)

        dense = None
        if keep_dense:
            dense = onnx.ModelProto()
            dense.CopyFrom(model)  # pruning edits the initializers in place
        pruned = passes.prune_user_onnx(model, options)
        described = OnnxSource(
            path=str(path.resolve()), sha256=sha256_file(path), opset_in=original_opset, sparsity=pruned.get("sparsity")
        )
        return model, make_inputs(options.seed), passes.calibration_batches(make_inputs, options.seed), described, dense
    spec = get_model(source)  # a one-line "unknown model" usage error listing the known names
    if options.input_shapes:
        raise UsageError(f"--input-shape is for .onnx files: {spec.name}'s config ({options.config}) fixes its input shapes")
    spec.check_config(options.config)
    passes.check_options(options, registered=True)
    import torch

    def make_inputs(seed: int) -> dict[str, np.ndarray]:
        return spec.example_inputs(options.config, options.batch, seed)

    with step(f"building {spec.name}:{options.config} in torch"):
        torch.manual_seed(options.seed)
        module = spec.instantiate(options.config)
    inputs = make_inputs(options.seed)
    dense = None
    if keep_dense and options.prune is not None:
        with step("exporting the unpruned model (the --eval-data reference)"):
            dense = export_verified(spec, module, options.config, inputs)[0]
    prune_report, pruned = passes.prune_registered(module, spec.name, options, inputs)
    with step("exporting to ONNX and verifying against torch"):
        model, report = export_verified(spec, module, options.config, inputs)
    passes.annotate(model, prune_report)
    described = RegisteredSource(
        model=spec.name,
        project=spec.project,
        config=options.config,
        sha256=hashlib.sha256(model.SerializeToString()).hexdigest(),
        export=report.to_dict(),
        sparsity=pruned.get("sparsity"),
        recovery=pruned.get("recovery"),
    )
    calibration = spec.calibration(options.config, options.seed) if spec.calibration else passes.calibration_batches(make_inputs, options.seed)
    if keep_dense and dense is None:
        dense = model  # nothing was pruned; int8 is applied later, to the saved file, not to this graph
    return model, inputs, calibration, described, dense


def check_fixed_shapes(inputs: list[dict], options: CompileOptions) -> None:
    """TVM specialises every kernel to one shape and takes only a symbolic batch axis: refuse any
    other symbolic dim here, naming the flag that fixes it, before minutes of importing."""
    if options.backend != "tvm":
        return
    for item in inputs:
        axes = [f"{d} (axis {axis})" for axis, d in enumerate(item["shape"]) if axis > 0 and isinstance(d, str)]
        if axes:
            raise UsageError(
                f"input {item['name']!r} {onnx_io.format_shape(item['shape'])} has symbolic dims {', '.join(axes)}; "
                f"the TVM backend needs fixed shapes: give --input-shape {item['name']}=DIMS"
            )


def options_record(options: CompileOptions) -> dict[str, Any]:
    """The options as the manifest keeps them: JSON values as they are, input shapes as given
    (NAME=DIMS; left out when none, so the records and cache keys of earlier artifacts stay valid),
    anything else (paths, a parsed sparsity plan) in its text form."""
    record = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in vars(options).items()}
    record.pop("input_shapes")
    if options.input_shapes:
        record["input_shapes"] = [f"{name}={onnx_io.format_shape(dims)}" for name, dims in options.input_shapes]
    return record


def options_hash(options: CompileOptions) -> str:
    text = json.dumps({k: str(v) for k, v in options_record(options).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_artifact(
    source: str, options: CompileOptions, out_dir: Path, evaluation: evaluate.EvalRequest | None = None,
    user: UserInputs | None = None,
) -> Manifest:
    """Compile SOURCE with `options` into the artifact directory `out_dir`; return its manifest.

    With `evaluation` the artifact and the graph before --prune/--quantize are scored on its data
    (manifest `accuracy`), and a drop above its `max_drop` fails the compile before anything is written.
    With `user`, int8 is calibrated on the user's data (manifest `quantization.calibration_data`) and
    the artifact is verified on the user's inputs too (`verification.user_inputs`), refused on a mismatch.
    """
    out_dir = Path(out_dir)
    backend = get_backend(options.backend)
    check_writable_parent(out_dir)
    if options.tune_trials < 0:
        raise UsageError("--tune must be a non-negative number of trials")
    target = get_target(options.target)
    if evaluation is not None:
        check_evaluation(evaluation, options, target.runs_here)
    user = user or UserInputs()
    user.check(options.quantize, target.runs_here)
    model, inputs, calibration, described, dense = resolve_source(source, options, keep_dense=evaluation is not None)
    calibration, calibration_data, calibration_notes = choose_calibration(model, inputs, calibration, described, options, user)
    verify_data = None
    if user.verify is not None:
        verify_data = load_user_data(user.verify, onnx_io.io_signature(model)["inputs"], user.preprocess, "--verify-inputs")
    eval_data = None
    if evaluation is not None:
        graph_io = onnx_io.io_signature(model)
        eval_data = evaluate.load_eval_data(evaluation.data, evaluation.labels, graph_io["inputs"],
                                            getattr(described, "model", None), flag="--eval-data")
        evaluate.check_targets(eval_data.targets, evaluation.metric, graph_io["outputs"][0]["shape"], eval_data.description)
    with atomic_dir(out_dir, MANIFEST_FILE) as tmp:
        onnx.save(model, str(tmp / MODEL_FILE))
        quantization = passes.quantize(tmp / MODEL_FILE, options, calibration, calibration_data).get("quantization")
        steps = output_steps(onnx.load(str(tmp / MODEL_FILE), load_external_data=False)) if quantization else None
        with step("reference run in ONNX Runtime" + (" (its int8 kernels)" if quantization else "")):
            reference = run_onnxruntime(str(tmp / MODEL_FILE), inputs, int8_kernels=bool(quantization))
        np.savez(tmp / INPUTS_FILE, **inputs)
        np.savez(tmp / REFERENCE_FILE, **reference)
        started = time.perf_counter()
        with step(f"compiling with {backend.name} for {options.target}"):
            result = backend.compile(tmp / MODEL_FILE, tmp, options)
        compile_s = time.perf_counter() - started
        compiled = onnx.load(str(tmp / MODEL_FILE), load_external_data=False)
        signature = onnx_io.io_signature(compiled)
        notes = result.notes + calibration_notes + passes.quantization_notes({"quantization": quantization} if quantization else {})
        if target.runs_here:
            with step("verifying the compiled artifact against ONNX Runtime"):
                verification = verify(backend.load(tmp).run(inputs), reference, steps)
        else:
            verification = Verification(passed=None, skipped=f"built for {options.target}, which cannot run here")
            notes.append(
                f"not verified here: run `tridesign profile DIR --remote HOST:PORT` on the {options.target} board "
                "(it compares the board's outputs with reference_outputs.npz)"
            )
        if verification.passed is False:
            raise TridesignError(
                f"{backend.name} output differs from ONNX Runtime: max abs error {verification.max_abs_err:.3g} > "
                f"{verification.tolerance:.3g}; nothing was written"
            )
        if verify_data is not None:
            verification = verification.model_copy(update={"user_inputs": verify_user_inputs(
                backend.load(tmp).run, str(tmp / MODEL_FILE), verify_data, batch_of(inputs), steps, backend.name)})
        accuracy = None
        if evaluation is not None and eval_data is not None and dense is not None:
            accuracy = measure_accuracy(evaluation, eval_data, backend.load(tmp).run,
                                        result.fixed_inputs or signature["inputs"], dense, evaluate.reference_description(described))
        manifest = Manifest(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source=described,
            backend=backend.name,
            target=TargetRecord(**{"name": options.target, **result.target}),
            options=options_record(options),
            config_hash=options_hash(options),
            files=[MODEL_FILE, INPUTS_FILE, REFERENCE_FILE, *([FP32_FILE] if quantization else []), *result.files, MANIFEST_FILE],
            tuned=result.tuned,
            tuning=result.tuning,
            notes=notes,
            compile_seconds=round(compile_s, 3),
            quantization=quantization,
            versions=package_versions("onnx", "onnxruntime", "apache-tvm", "numpy", "torch"),
            inputs=[TensorSpec(**t) for t in (result.fixed_inputs or signature["inputs"])],
            outputs=[TensorSpec(**t) for t in signature["outputs"]],
            weight_sparsity=read_weight_sparsity(compiled),
            sparse_layers=result.sparse_layers,
            verification=verification,
            **({"accuracy": accuracy} if accuracy is not None else {}),  # absent, not null, when not measured
        )
        write_manifest(tmp, manifest)
    return manifest


def check_evaluation(evaluation: evaluate.EvalRequest, options: CompileOptions, runs_here: bool) -> None:
    """Refuse an --eval-data compile that cannot measure a drop, before any expensive step."""
    evaluation.check()
    if options.prune is None and not options.quantize:
        raise UsageError("--eval-data measures what --prune/--quantize cost; give one of them "
                         "(`tridesign evaluate DIR` scores any artifact)")
    if not runs_here:
        raise UsageError(f"--eval-data runs the compiled artifact, and {options.target} artifacts cannot run here")


def measure_accuracy(evaluation: evaluate.EvalRequest, data: evaluate.EvalData, run: evaluate.Runner,
                     artifact_inputs: list[dict[str, Any]], dense: onnx.ModelProto, dense_text: str) -> dict[str, Any]:
    """The compiled artifact and the unpruned, unquantized graph on the same rows; refused above the bound."""
    with step(f"scoring the artifact on {data.samples} samples ({evaluation.metric})"):
        compressed = evaluate.score(run, artifact_inputs, data, evaluation.metric)
    with step("scoring the uncompressed reference in ONNX Runtime"):
        reference = evaluate.score(evaluate.onnx_runner(dense), onnx_io.io_signature(dense)["inputs"], data, evaluation.metric)
    record = evaluate.accuracy_record(evaluation.metric, data, compressed, reference, dense_text)
    if evaluation.max_drop is not None:
        record["max_drop"] = evaluation.max_drop
    evaluate.check_drop(record, evaluation.max_drop)
    return record


def batch_of(inputs: dict[str, np.ndarray]) -> int:
    """The artifact's batch size: that of its verification inputs, which it was compiled for."""
    first = next(iter(inputs.values()))
    return len(first) if first.ndim else 1


def choose_calibration(
    model: onnx.ModelProto, inputs: dict[str, np.ndarray], calibration: list[dict[str, np.ndarray]],
    described: RegisteredSource | OnnxSource, options: CompileOptions, user: UserInputs,
) -> tuple[list[dict[str, np.ndarray]], str, list[str]]:
    """(calibration batches, what they are for the manifest, notes): the user's --calibration data
    when given; else a registered model's task data, or seeded noise, said in a note for a user's ONNX."""
    if user.calibration is not None:
        data = load_user_data(user.calibration, onnx_io.io_signature(model)["inputs"], user.preprocess, "--calibration")
        return data.batches(batch_of(inputs)), data.description, []
    if isinstance(described, RegisteredSource) and get_model(described.model).calibration:
        return calibration, f"{described.model}'s task data", []
    notes = [passes.RANDOM_CALIBRATION_NOTE] if options.quantize and isinstance(described, OnnxSource) else []
    return calibration, passes.RANDOM_CALIBRATION, notes


def verify_user_inputs(run: evaluate.Runner, model_path: str, data: UserData, batch: int,
                       steps: dict[str, float] | None, backend_name: str) -> dict[str, Any]:
    """The compiled artifact against ONNX Runtime on the user's inputs, batch by batch, under the
    same rule as the seeded inputs; the worst batch (error less tolerance) is recorded, and any failing batch refuses."""
    results = []
    with step(f"verifying on --verify-inputs {data.description}"):
        for rows in data.batches(batch):
            results.append(verify(run(rows), run_onnxruntime(model_path, rows, int8_kernels=steps is not None), steps))
    worst = max(results, key=lambda v: (not v.passed, (v.max_abs_err or 0.0) - (v.tolerance or 0.0)))
    if not worst.passed:
        raise TridesignError(
            f"{backend_name} output differs from ONNX Runtime on --verify-inputs {data.description}: max abs error "
            f"{worst.max_abs_err:.3g} > {worst.tolerance:.3g}; nothing was written"
        )
    return {"data": data.description, "samples": data.samples, "batches": len(results), "passed": True,
            "max_abs_err": worst.max_abs_err, "max_rel_err": worst.max_rel_err, "tolerance": worst.tolerance}
