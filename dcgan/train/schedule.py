"""The learning rates at each step: the configured ones, scaled to the global batch, ramped up at the start.

A pure function of the config, the number of processes and the step, so a resumed run (which may change
optim.*) sets exactly what a straight run would, and nothing about it needs saving.
"""

from __future__ import annotations

import torch

from dcgan.config import OptimConfig


def batch_factor(optim: OptimConfig, global_batch: int) -> float:
    """What `optim.lr_scaling` multiplies both learning rates by at this global batch."""
    ratio = global_batch / optim.base_batch
    return {"none": 1.0, "sqrt": ratio**0.5, "linear": ratio}[optim.lr_scaling]


def lr_factor(optim: OptimConfig, global_batch: int, step: int) -> float:
    """The batch factor, times the warm-up's (step + 1) / warmup_steps while `step` (0-based) is in it."""
    factor = batch_factor(optim, global_batch)
    if step < optim.warmup_steps:
        factor *= (step + 1) / optim.warmup_steps
    return factor


def set_learning_rates(
    opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, optim: OptimConfig, global_batch: int, step: int
) -> None:
    """Put the rates for `step` into both optimisers' parameter groups (host floats: no device work)."""
    factor = lr_factor(optim, global_batch, step)
    for optimizer, lr in ((opt_g, optim.lr_g), (opt_d, optim.lr_d)):
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
