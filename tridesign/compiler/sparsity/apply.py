"""A sparsity plan applied to named weights: framework-free, shared by the torch and the ONNX pass.

The caller hands over the prunable weights as numpy arrays (with whether each is stored as
(in, out), like an ONNX MatMul's right operand) and gets one `LayerRecord` per pruned weight.
Layers assigned the same method form one group, so a global method ranks over exactly the layers a
user gave it. ZO-GraSP needs a loss, which only the caller can run: it passes `zo_scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tridesign.compiler.sparsity import prune_fns
from tridesign.compiler.sparsity.importance import as_matrix, as_nm_matrix, from_matrix, from_nm_matrix, magnitude
from tridesign.compiler.sparsity.pattern import is_pattern_conv, pattern_mask
from tridesign.compiler.sparsity.report import LayerRecord
from tridesign.errors import UsageError
from tridesign.sparsity_plan import NM, Block, Method, NoSparsity, Pattern3x3, SparsityPlan, Unstructured, ZOGrasp

ZOScores = Callable[[list[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Weight:
    """A prunable weight: its values and whether it is stored (in, out)."""

    values: np.ndarray
    transposed: bool = False


def group_layers(names: list[str], plan: SparsityPlan) -> dict[Method, list[str]]:
    groups: dict[Method, list[str]] = {}
    for name in names:
        spec = plan.for_layer(name)
        if not isinstance(spec, NoSparsity):
            groups.setdefault(spec, []).append(name)
    return groups


def _block_mask(spec: Block, w: Weight, min_density: float) -> np.ndarray:
    mask = prune_fns.block_mask(as_matrix(w.values, w.transposed), spec.sparsity, spec.shape, min_density)
    return from_matrix(mask, w.values.shape, w.transposed)


def _nm_mask(spec: NM, w: Weight) -> np.ndarray:
    """N:M groups along a conv's input channels at each (out, kh, kw), so TensorRT can run it sparse;
    along the input features of a Gemm/MatMul/Linear weight. The torch pass, the ONNX pass and the
    iterative schedule all prune N:M here."""
    mask = prune_fns.nm_mask(as_nm_matrix(w.values, w.transposed), spec.n, spec.m)
    return from_nm_matrix(mask, w.values.shape, w.transposed)


def _matrix_masks(
    spec: Block | NM, weights: dict[str, Weight], names: list[str], min_density: float
) -> dict[str, np.ndarray]:
    if isinstance(spec, Block):
        return {name: _block_mask(spec, weights[name], min_density) for name in names}
    return {name: _nm_mask(spec, weights[name]) for name in names}


def compute_records(
    weights: dict[str, Weight], plan: SparsityPlan, zo_scores: ZOScores | None = None
) -> dict[str, LayerRecord]:
    """Masks for every weight the plan prunes (channel pruning is structural and handled elsewhere),
    each layer held at the plan's `min_density` floor wherever a ranking decides how much it keeps
    (N:M fixes N of every M, so it never empties a layer)."""
    records: dict[str, LayerRecord] = {}
    floor = plan.min_density
    for spec, names in group_layers(list(weights), plan).items():
        extra: dict[str, dict] = {n: {} for n in names}
        scores = {n: magnitude(weights[n].values) for n in names}
        if isinstance(spec, Unstructured):
            masks = (
                prune_fns.global_masks(scores, spec.sparsity, floor)
                if spec.scope == "global"
                else {n: prune_fns.layer_mask(scores[n], spec.sparsity, floor) for n in names}
            )
        elif isinstance(spec, (Block, NM)):
            masks = _matrix_masks(spec, weights, names, floor)
        elif isinstance(spec, Pattern3x3):
            masks = (
                prune_fns.global_masks(scores, spec.sparsity, floor)
                if spec.scope == "global"
                else {n: prune_fns.layer_mask(scores[n], spec.sparsity, floor) for n in names}
            )
            for n in names:
                if is_pattern_conv(weights[n].values.shape):
                    masks[n], stats = pattern_mask(weights[n].values, masks[n])
                    extra[n] = {"kernels_removed": stats.removed, "kernels_patterned": stats.patterned,
                                "kernels_dense": stats.dense}
        elif isinstance(spec, ZOGrasp):
            if zo_scores is None:
                raise UsageError("zograsp needs a loss to estimate gradients; it runs on registered models")
            zo = zo_scores(names)
            ratio_of = {n: float(1.0 - m.mean()) for n, m in prune_fns.global_masks(zo, spec.sparsity, floor).items()}
            masks = prune_fns.ratio_masks(scores, ratio_of, floor)
            for n in names:
                extra[n] = {"zograsp_layer_sparsity": round(ratio_of[n], 6)}
        else:
            raise UsageError(f"{spec.method} pruning is structural; it cannot be mixed into a mask plan")
        for n in names:
            records[n] = LayerRecord(
                name=n,
                method=spec.annotation_method,
                pattern=spec.pattern if (not isinstance(spec, Pattern3x3) or is_pattern_conv(weights[n].values.shape))
                else Unstructured.pattern,
                original_shape=tuple(weights[n].values.shape),
                mask=masks[n],
                values=weights[n].values * masks[n],
                extra=extra[n],
            )
    return records


def nominal(plan: SparsityPlan, records: dict[str, LayerRecord]) -> float:
    """Weighted nominal sparsity the plan asked for over the layers it pruned."""
    total = sum(int(np.prod(r.original_shape)) for r in records.values())
    asked = sum(plan.for_layer(n).sparsity * int(np.prod(r.original_shape)) for n, r in records.items())
    return asked / total if total else 0.0
