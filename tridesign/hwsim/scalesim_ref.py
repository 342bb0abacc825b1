"""Run SCALE-Sim itself (the `scalesim` PyPI package, optional) on one layer, for cross-checks.

SCALE-Sim reports a layer's compute cycles as the index of the last cycle its memory system
serves, which without stalls is the number of rows of its demand matrices minus one. Its
double-buffered memory model (`service_memory_requests`) fails under numpy >= 2.3 in scalesim
3.0.0 (`int()` of a 1-element array), and it is a per-row Python loop besides, so this adapter
stops after SCALE-Sim's own compute stage: it builds SCALE-Sim's operand and demand matrices with
SCALE-Sim's classes and counts their rows. Nothing here re-implements SCALE-Sim's formulas.
"""

from __future__ import annotations

import importlib.util


def available() -> bool:
    return importlib.util.find_spec("scalesim") is not None


def conv_compute_cycles(
    dataflow: str, rows: int, cols: int, ifmap_h: int, ifmap_w: int, filt_h: int, filt_w: int,
    channels: int, filters: int, stride: int,
) -> int:
    """SCALE-Sim's compute cycles (stall-free) of one conv layer on a pre-padded input."""
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.compute.systolic_compute_is import systolic_compute_is
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.topology_utils import topologies

    config = scale_config()
    config.force_valid()
    config.array_rows, config.array_cols, config.df = rows, cols, dataflow
    config.sparsity_support = False
    config.sparsity_optimized_mapping = False
    topo = topologies()
    topo.load_layer_params_from_list(
        "layer", ["layer", ifmap_h, ifmap_w, filt_h, filt_w, channels, filters, stride, stride, 1, 1]
    )
    topo.topo_calc_hyperparams()
    topo.set_spatio_temporal_params()
    operands = operand_matrix()
    operands.set_params(layer_id=0, config_obj=config, topoutil_obj=topo, layoututil_obj=layouts())
    _, ifmap = operands.get_ifmap_matrix()
    _, filt = operands.get_filter_matrix()
    _, ofmap = operands.get_ofmap_matrix()
    compute = {"ws": systolic_compute_ws, "os": systolic_compute_os, "is": systolic_compute_is}[dataflow]()
    compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filt, ofmap_op_mat=ofmap)
    _, _, ofmap_demand = compute.get_demand_matrices()
    return int(ofmap_demand.shape[0]) - 1


def gemm_compute_cycles(dataflow: str, rows: int, cols: int, M: int, K: int, N: int) -> int:
    """An (M x K)·(K x N) product as SCALE-Sim sees it: an M x 1 image, K channels, N 1x1 filters."""
    return conv_compute_cycles(dataflow, rows, cols, M, 1, 1, 1, K, N, 1)
