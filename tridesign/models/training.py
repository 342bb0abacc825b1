"""One optimizer step shared by the trainers of the zoo's trained models (digits, the tracker's detector)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def masked_step(
    opt: "torch.optim.Optimizer",
    sched: "torch.optim.lr_scheduler.LRScheduler",
    loss: "torch.Tensor",
    params: dict[str, "torch.nn.Parameter"],
    masks: dict[str, "torch.Tensor"] | None,
) -> float:
    """Backward, step, schedule, then re-apply each mask, so recovery after pruning never revives a
    pruned weight; returns the loss value."""
    import torch

    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if masks:
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
    return loss.item()
