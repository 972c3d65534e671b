"""The GAN maths: D's and G's losses as pure functions of D's logits, each with its named statistics.

A loss function returns `(loss, stats)`: the scalar to back-propagate, and detached scalars to report
under their names (they travel to metrics.jsonl and the trackers by name, summed on the device between
reports). The trainer's phases (dcgan/trainer.py) only add synchronisation, precision, clipping and the
optimiser step. A new loss is one pair of functions and one entry in `LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

Stats = dict[str, torch.Tensor]


def d_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0, scale: float = 1.0):
    """D's binary cross-entropy: real images towards `real_label` (< 1: one-sided label smoothing), fakes
    towards 0, the sum times `scale`. Reports it as loss_D, and D_x, D's mean probability on real images."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    loss = scale * (loss_real + loss_fake)
    return loss, {"loss_D": loss.detach(), "D_x": torch.sigmoid(real_logits).mean().detach()}


def g_nonsaturating(fake_logits: torch.Tensor):
    """G's non-saturating loss (Goodfellow et al. 2014): -log D(G(z)), i.e. BCE towards 1. Reports it as
    loss_G, and D_G_z, D's mean probability on the fakes G is trained through."""
    fake_logits = fake_logits.float()
    loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return loss, {"loss_G": loss.detach(), "D_G_z": torch.sigmoid(fake_logits).mean().detach()}


class Loss(NamedTuple):
    d: Callable[..., tuple[torch.Tensor, Stats]]  # (real_logits, fake_logits, real_label, scale)
    g: Callable[..., tuple[torch.Tensor, Stats]]  # (fake_logits)


LOSSES: dict[str, Loss] = {
    "bce": Loss(d_bce, g_nonsaturating),
}
