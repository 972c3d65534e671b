"""The GAN maths: D's and G's losses as pure functions of D's logits, each with its named statistics.

A loss function returns `(loss, stats)`: the scalar to back-propagate, and detached scalars to report
under their names (they travel to metrics.jsonl and the trackers by name, summed on the device between
reports). The trainer's phases (dcgan/train/loop.py) only add synchronisation, precision, clipping and the
optimiser step. A new loss is one pair of functions and one entry in `LOSSES`.

Every pair reports D_x and D_G_z, D's mean output on real and fake images in its own convention: a
probability for `bce` (the sigmoid of the logit), the raw score for `hinge` and `least_squares`. The
R1 penalty (`r1_penalty`) is added to D's loss by the trainer on its lazy schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

Stats = dict[str, torch.Tensor]


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp16 and bf16 (autocast's outputs) scored in float32; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def d_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0, scale: float = 1.0):
    """D's binary cross-entropy: real images towards `real_label` (< 1: one-sided label smoothing), fakes
    towards 0, the sum times `scale`. Reports it as loss_D, and D_x, D's mean probability on real images."""
    real_logits, fake_logits = _wide(real_logits), _wide(fake_logits)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    loss = scale * (loss_real + loss_fake)
    return loss, {"loss_D": loss.detach(), "D_x": torch.sigmoid(real_logits).mean().detach()}


def g_nonsaturating(fake_logits: torch.Tensor):
    """G's non-saturating loss (Goodfellow et al. 2014): -log D(G(z)), i.e. BCE towards 1. Reports it as
    loss_G, and D_G_z, D's mean probability on the fakes G is trained through."""
    fake_logits = _wide(fake_logits)
    loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return loss, {"loss_G": loss.detach(), "D_G_z": torch.sigmoid(fake_logits).mean().detach()}


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0, scale: float = 1.0):
    """D's hinge loss (Lim & Ye 2017; SAGAN, BigGAN): relu(1 - D(x)) + relu(1 + D(G(z))), times `scale`.
    A margin, not a target: `real_label` does not apply."""
    real_logits, fake_logits = _wide(real_logits), _wide(fake_logits)
    loss = scale * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())
    return loss, {"loss_D": loss.detach(), "D_x": real_logits.mean().detach()}


def g_hinge(fake_logits: torch.Tensor):
    """G's side of the hinge loss: -D(G(z))."""
    fake_logits = _wide(fake_logits)
    loss = -fake_logits.mean()
    return loss, {"loss_G": loss.detach(), "D_G_z": fake_logits.mean().detach()}


def d_least_squares(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0, scale: float = 1.0):
    """D's least-squares loss (LSGAN, Mao et al. 2017, targets a=0, b=`real_label`): (D(x) - b)^2 + D(G(z))^2,
    each a mean, the sum times `scale`."""
    real_logits, fake_logits = _wide(real_logits), _wide(fake_logits)
    loss = scale * ((real_logits - real_label).square().mean() + fake_logits.square().mean())
    return loss, {"loss_D": loss.detach(), "D_x": real_logits.mean().detach()}


def g_least_squares(fake_logits: torch.Tensor):
    """G's least-squares loss, target c=1: (D(G(z)) - 1)^2."""
    fake_logits = _wide(fake_logits)
    loss = (fake_logits - 1).square().mean()
    return loss, {"loss_G": loss.detach(), "D_G_z": fake_logits.mean().detach()}


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor, gamma: float, scale: torch.Tensor | None = None):
    """R1 (Mescheder et al. 2018): gamma/2 * E ||grad_x D(x)||^2 on real images, differentiable (for D's
    weights). `real_images` must require grad and `real_logits` come from them. `scale` is the fp16 loss
    scale as a tensor, or None: D's output is scaled before the gradient is taken and the gradient
    unscaled after, so fp16 does not flush it to zero; an overflow leaves inf for the scaler to skip.
    Returns (penalty, stats) with the unweighted E||grad||^2 as `r1`."""
    outputs = _wide(real_logits).sum()
    if scale is not None:
        outputs = outputs * scale
    (grad,) = torch.autograd.grad(outputs, real_images, create_graph=True)
    grad = _wide(grad)
    if scale is not None:
        grad = grad / scale
    squared = grad.square().flatten(1).sum(1).mean()
    return gamma / 2 * squared, {"r1": squared.detach()}


class Loss(NamedTuple):
    d: Callable[..., tuple[torch.Tensor, Stats]]  # (real_logits, fake_logits, real_label, scale)
    g: Callable[..., tuple[torch.Tensor, Stats]]  # (fake_logits)


LOSSES: dict[str, Loss] = {
    "bce": Loss(d_bce, g_nonsaturating),
    "hinge": Loss(d_hinge, g_hinge),
    "least_squares": Loss(d_least_squares, g_least_squares),
}
