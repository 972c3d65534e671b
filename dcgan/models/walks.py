"""Latent walks: frames that move through G's input space, for `dcgan sample --interpolate` and `--interpolate-classes`.

Noise walks use spherical interpolation: z is Gaussian, so its samples lie near a sphere of radius sqrt(z_dim),
and a straight line between two of them passes through a middle of lower norm (about 0.71x for two independent
draws) where G's training noise almost never lay; slerp stays at the norm of its ends. A class walk keeps z
fixed and moves linearly between the learned class embeddings of a conditional G. Every walk returns to where
it started, so an animation loops without a jump.
"""

from __future__ import annotations

import torch
from torch import nn

from dcgan.models.sampling import sample_noise


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points at fractions `t` (T,) of the great-circle arc from a to b (both (d,)), their norms interpolated
    linearly: (T, d). Nearly parallel vectors fall back to a straight line."""
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm())
    angle = torch.arccos(cos.clamp(-1, 1))
    if angle < 1e-6:
        return (a64 + (b64 - a64) * t64).to(a.dtype)
    unit_a, unit_b = a64 / a64.norm(), b64 / b64.norm()
    direction = (torch.sin((1 - t64) * angle) * unit_a + torch.sin(t64 * angle) * unit_b) / torch.sin(angle)
    norm = a64.norm() + (b64.norm() - a64.norm()) * t64
    return (direction * norm).to(a.dtype)


def _loop(keys: torch.Tensor, frames: int, between) -> torch.Tensor:
    """`frames` points per segment from each key to the next and from the last back to the first: (K * frames, d);
    the first point of each segment is its key."""
    t = torch.arange(frames, dtype=torch.float64) / frames
    return torch.cat([between(keys[k], keys[(k + 1) % len(keys)], t) for k in range(len(keys))])


def noise_walk(z_dim: int, points: int, frames: int, seed: int, truncation: float | None = None) -> torch.Tensor:
    """(points * frames, z_dim) noise: a seeded loop through `points` random latent points (the first `points`
    noise vectors `dcgan sample --seed` draws), `frames` per segment, spherically interpolated."""
    keys = sample_noise(points, z_dim, torch.Generator().manual_seed(seed), truncation)
    return _loop(keys, frames, slerp)


def class_walk(generator: nn.Module, frames: int) -> torch.Tensor:
    """(classes * frames, class_dim) class embeddings of a conditional G: through each class in order and back to
    the first, linearly between learned embeddings."""
    keys = generator.embed.weight.detach().cpu()
    return _loop(keys, frames, lambda a, b, t: a + (b - a) * t[:, None].to(a.dtype))
