"""DeepZero (ICLR'24): ResNet-20 for CIFAR-10, the ZO runtime's reference workload.

Architecture: He et al. 2016 CIFAR ResNet (3 stages x 3 basic blocks, 16/32/64 channels, option-B
1x1 projection shortcuts where the shape changes), as used by DeepZero (OPTML-Group/DeepZero), built
by the shared CIFAR ResNet builder. The `paper` config has ~0.27 M parameters; `tiny` halves the
width for tests and the demo. `resnet20_digits` (registered in tridesign.models.digits) is the same network
with weights trained on scikit-learn's digits, for accuracy work (pruning, int8, ZO finetuning).
"""

from __future__ import annotations

import numpy as np

from tridesign.models.registry import ModelSpec, register


def resnet20_macs(width: int = 16, num_classes: int = 10, hw: int = 32, in_channels: int = 3) -> int:
    """Dense multiply-accumulates of ResNet-20 counted layer by layer (conv, shortcut, fc; no BN/ReLU)."""
    macs = in_channels * width * 9 * hw * hw
    cin = width
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
        for b in range(3):
            stride = 2 if (stage > 0 and b == 0) else 1
            if stride == 2:
                hw //= 2
            macs += cin * cout * 9 * hw * hw + cout * cout * 9 * hw * hw
            if stride != 1 or cin != cout:
                macs += cin * cout * hw * hw
            cin = cout
    return macs + cin * num_classes


def _cifar_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)}


RESNET20_WIDTHS = {"tiny": 8, "paper": 16}


def build_resnet20(config: str = "paper", num_classes: int = 10, in_channels: int = 3):
    """ResNet-20 (3 stages of 3 basic blocks) at the width of `config` (torch is imported here, on
    use, so registering the zoo stays light)."""
    from tridesign.models.resnet import CifarResNet

    return CifarResNet(20, RESNET20_WIDTHS[config], num_classes=num_classes, in_channels=in_channels)


RESNET20 = register(
    ModelSpec(
        name="resnet20",
        project="DeepZero",
        task="image classification (CIFAR-10, 32x32)",
        build=build_resnet20,
        example_inputs=_cifar_inputs,
        output_names=("logits",),
        published_params=269_722,
        published_source=(
            "He et al. 2016, Table 6 (ResNet-20: 0.27 M); 269,722 is that paper's layout counted (option-A "
            "parameter-free shortcuts), ours has option-B projections (272,474); DeepZero uses it for CIFAR-10"
        ),
        params_source="paper",
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
)

# --- Solver-in-the-loop PDE correction -------------------------------------------------------
#
# DeepZero's second workload trains a corrective network *through* a PDE solver that has no
# gradients (Um et al. 2020, "Solver-in-the-Loop"): each step the coarse solver advances the flow,
# the network adds a correction, and the loss compares the rollout with a fine reference. Because
# the solver below is numpy, torch autograd cannot see through it; only zeroth-order estimates
# (forward passes of solver + exported corrector) can train the network, which is the point.
# The corrector follows Um et al.'s 2D layout (three 5x5 convs, 32 and 64 features) on a 2-channel
# velocity field plus a Reynolds-number channel; DeepZero's exact corrector width is *uncertain*.

PDE_CORRECTOR_CONFIGS = {
    "tiny": {"widths": (8, 16), "grid": (16, 16)},
    "paper": {"widths": (32, 64), "grid": (32, 64)},
}


def build_pde_corrector(config: str = "paper"):
    """Fully convolutional corrector: (velocity u, v, Reynolds channel) -> velocity correction."""
    import torch.nn as nn

    w1, w2 = PDE_CORRECTOR_CONFIGS[config]["widths"]
    return nn.Sequential(
        nn.Conv2d(3, w1, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(w1, w2, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(w2, 2, 5, padding=2),
    )


def solver_step(velocity: np.ndarray, dt: float = 0.5, viscosity: float = 0.01) -> np.ndarray:
    """One coarse step of 2D Burgers flow on a periodic grid: semi-Lagrangian advection + diffusion.

    `velocity` is (2, H, W) in cells per unit time. The back-traced positions are floored to grid
    indices, so the step is piecewise and has no autograd graph: a genuinely non-differentiable
    solver, as in DeepZero's setting.
    """
    _, h, w = velocity.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    px = xs - dt * velocity[0]
    py = ys - dt * velocity[1]
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = px - x0, py - y0
    x0, y0 = x0 % w, y0 % h
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    advected = (
        velocity[:, y0, x0] * (1 - fx) * (1 - fy)
        + velocity[:, y0, x1] * fx * (1 - fy)
        + velocity[:, y1, x0] * (1 - fx) * fy
        + velocity[:, y1, x1] * fx * fy
    )
    laplacian = (
        np.roll(advected, 1, axis=1) + np.roll(advected, -1, axis=1)
        + np.roll(advected, 1, axis=2) + np.roll(advected, -1, axis=2) - 4 * advected
    )
    return (advected + dt * viscosity * laplacian).astype(velocity.dtype)


def corrected_rollout(velocity: np.ndarray, corrector, reynolds: float, steps: int) -> np.ndarray:
    """Alternate solver steps with corrections; `corrector` maps a (1, 3, H, W) array to (1, 2, H, W).

    `corrector` is any numpy callable (an ONNX Runtime session, a TVM module), so the loop runs on
    the device side without torch. Returns the (steps, 2, H, W) trajectory.
    """
    states = []
    u = velocity.astype(np.float32)
    re_channel = np.full((1,) + u.shape[1:], reynolds, dtype=np.float32)
    for _ in range(steps):
        u = solver_step(u)
        u = u + corrector(np.concatenate([u, re_channel])[None])[0]
        states.append(u)
    return np.stack(states)


def _pde_inputs(config: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = PDE_CORRECTOR_CONFIGS[config]["grid"]
    state = rng.standard_normal((batch, 3, h, w), dtype=np.float32)
    return {"state": state}


register(
    ModelSpec(
        name="deepzero_pde_corrector",
        project="DeepZero",
        task="solver-in-the-loop PDE correction (2D Burgers flow, non-differentiable solver)",
        build=build_pde_corrector,
        example_inputs=_pde_inputs,
        output_names=("correction",),
        published_params=56_898,
        published_source=(
            "reference count of Um et al. 2020's 2D corrector layout (5x5 convs 3->32->64->2); "
            "DeepZero reuses that setting, exact width uncertain"
        ),
        params_source="derived",
        dynamic_axes={"state": {0: "batch"}, "correction": {0: "batch"}},
        notes={"solver": "tridesign.models.deepzero.solver_step (numpy, non-differentiable)"},
    )
)
