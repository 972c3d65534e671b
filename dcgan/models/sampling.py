"""Drawing images from a G: seeded noise (optionally truncated), the classes of a conditional G, and G's output
in [0, 1] with BatchNorm in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from dcgan.data import from_model_range


def sample_noise(n: int, z_dim: int, stream: torch.Generator, truncation: float | None = None) -> torch.Tensor:
    """(n, z_dim) standard normal noise on the CPU; with `truncation` t, values outside [-t, t] are redrawn.

    The truncation trick (Brock et al. 2018) trades diversity for fidelity: smaller t, cleaner but more
    alike digits (`dcgan eval --truncation` shows it as higher precision, lower recall).
    """
    noise = torch.randn(n, z_dim, generator=stream)
    if truncation is not None:
        outside = noise.abs() > truncation
        while outside.any():
            noise[outside] = torch.randn(int(outside.sum()), generator=stream)
            outside = noise.abs() > truncation
    return noise


def per_class_labels(num_classes: int, columns: int) -> torch.Tensor:
    """Class k repeated `columns` times, for k = 0, 1, ...: a grid of `columns` columns gets one row per class."""
    return torch.arange(num_classes).repeat_interleave(columns)


@torch.no_grad()
def render(
    generator: nn.Module,
    noise: torch.Tensor,
    pixel_range: str,
    labels: torch.Tensor | None = None,
    class_vectors: torch.Tensor | None = None,
) -> torch.Tensor:
    """G(noise[, labels]) with BatchNorm in eval mode, as images in [0, 1] on the CPU; G's mode is left as it was.
    `labels` (class indices) for a conditional G, None for an unconditional one; or `class_vectors`, class
    embeddings (N, class_dim) of a conditional G (dcgan/models/walks.py)."""
    was_training = generator.training
    generator.eval()
    try:
        device = next(generator.parameters()).device
        noise = noise.to(device)
        if class_vectors is not None:
            out = generator.from_class_vectors(noise, class_vectors.to(device))
        else:
            out = generator(noise) if labels is None else generator(noise, labels.to(device))
        return from_model_range(out.float(), pixel_range).cpu()
    finally:
        generator.train(was_training)


def generate(
    generator: nn.Module,
    n: int,
    seed: int,
    pixel_range: str,
    truncation: float | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """n images in [0, 1], shape (n, C, H, W), from a seeded (optionally truncated) noise stream. A conditional
    G draws the classes `labels` (n class indices), or classes drawn uniformly from the same stream."""
    stream = torch.Generator().manual_seed(seed)
    noise = sample_noise(n, generator.z_dim, stream, truncation)
    classes = getattr(generator, "num_classes", 0)
    if classes and labels is None:
        labels = torch.randint(classes, (n,), generator=stream)
    return render(generator, noise, pixel_range, labels if classes else None)
