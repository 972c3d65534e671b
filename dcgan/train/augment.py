"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transformations are applied to every image D sees, real and fake, in
D's step and in G's step, so D cannot tell the two apart by the augmentation, and G's gradient flows
back through it. Each transformation draws per image from the generator it is given (the trainer's
per-rank noise stream, which checkpoints save), so an augmented run resumes exactly.

`color`: brightness, saturation and contrast; `translation`: a shift of up to 1/8 of the side, zeros
moving in; `cutout`: a square of half the side set to zero. Zero is the middle of [-1, 1] and black in
[0, 1], as in the paper's code for both. `xflip` (not the paper's) mirrors half of the images left to
right: for data that allows it (not digits). Adaptive augmentation (dcgan/train/ada.py) applies the same
operations, each to an image with probability p.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One U(0, 1) draw per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(images.shape[0], 1, 1, 1, device=images.device, dtype=images.dtype, generator=generator)


def color(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    images = images + (_uniform(images, generator) - 0.5)  # brightness
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * (_uniform(images, generator) * 2) + mean  # saturation (a no-op on grey images)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_uniform(images, generator) + 0.5) + mean  # contrast


def translation(images: torch.Tensor, generator: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its side each way; what moves in is zero."""
    n, _, h, w = images.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = images.device
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=dev, generator=generator)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=dev, generator=generator)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    # Index into the image padded by one zero pixel; a source outside the image lands on that border.
    src_y = (rows + shift_y + 1).clamp(0, h + 1).expand(n, h, w)
    src_x = (cols + shift_x + 1).clamp(0, w + 1).expand(n, h, w)
    padded = F.pad(images, [1, 1, 1, 1])
    batch = torch.arange(n, device=dev).view(n, 1, 1)
    moved = padded.permute(0, 2, 3, 1)[batch, src_y, src_x]  # (N, H, W, C)
    return moved.permute(0, 3, 1, 2).contiguous(memory_format=_layout(images))


def cutout(images: torch.Tensor, generator: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a square of `ratio` of the side in each image, centred anywhere (it may cross the edge)."""
    n, _, h, w = images.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = images.device
    centre_y = torch.randint(0, h + (1 - size_y % 2), (n, 1), device=dev, generator=generator)
    centre_x = torch.randint(0, w + (1 - size_x % 2), (n, 1), device=dev, generator=generator)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_rows = (rows >= top) & (rows < top + size_y)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size_x)  # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return images * keep[:, None].to(images.dtype)


def xflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left to right with probability 1/2."""
    flip = _uniform(images, generator) < 0.5
    return torch.where(flip, images.flip(-1), images)


AUGMENT = {"xflip": xflip, "color": color, "translation": translation, "cutout": cutout}


def diff_augment(images: torch.Tensor, policy: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """`images` through each transformation of `policy`, in the paper's order (color, translation, cutout;
    xflip first)."""
    for name in AUGMENT:
        if name in policy:
            images = AUGMENT[name](images, generator)
    return images


def _layout(images: torch.Tensor) -> torch.memory_format:
    """Keep channels_last input channels_last (the layout D's convolutions were set up for)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
