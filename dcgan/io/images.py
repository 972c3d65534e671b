"""Images out: grids (PNG), arrays (.npy) and folders of numbered PNGs, from (N, C, H, W) tensors in [0, 1]."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch.nn import functional as F

from dcgan.errors import UserError


def make_grid(images: torch.Tensor, padding: int = 2, columns: int | None = None) -> torch.Tensor:
    """(N, C, H, W) -> one (C, H', W') grid, square-ish unless `columns` is given, `padding` black pixels
    around every image.

    The same layout as torchvision's make_grid; written with einops because importing torchvision
    costs ~3 s per process (it imports torch._dynamo), paid by every rank and every CLI call.
    """
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    blank = images.new_zeros(rows * columns - len(images), *images.shape[1:])
    tiles = F.pad(torch.cat([images, blank]), (padding, 0, padding, 0))
    grid = rearrange(tiles, "(r c) ch h w -> ch (r h) (c w)", c=columns)
    return F.pad(grid, (0, padding, 0, padding))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 pixels (what PNG files and W&B want)."""
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> uint8 (N, H, W) grey or (N, H, W, 3) RGB: what PNG files and .npy users expect."""
    pixels = to_uint8(images).cpu()
    return (pixels[:, 0] if pixels.shape[1] == 1 else rearrange(pixels, "n c h w -> n h w c")).numpy()


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None) -> torch.Tensor:
    """Write a PNG grid (grey or RGB; square-ish unless `columns`) of (N, C, H, W) images in [0, 1]; returns
    the (C, H', W') grid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, columns=columns)
    Image.fromarray(to_pixels(grid[None])[0]).save(path)
    return grid


def write_samples(images: torch.Tensor, out: str | Path, columns: int | None = None) -> str:
    """`DIR/` (or an existing folder): numbered PNGs, one per image; `.png`: one grid (`columns` wide, else
    square-ish); `.npy`: uint8 (N, H, W) or (N, H, W, 3). Returns what was written, in words."""
    path = Path(out)
    if os.fspath(out).endswith(("/", os.sep)) or path.is_dir():
        return _write_png_folder(images, path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        save_grid(images, path, columns)
        return f"a grid of {len(images)} samples to {path}"
    if suffix == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, to_pixels(images))
        return f"{len(images)} samples to {path}"
    raise UserError(f"--out {out}: use a folder (DIR/), a .png (grid) or a .npy (uint8 array) file name")


def save_animation(frames: torch.Tensor, path: Path, fps: float, min_side: int = 128) -> str:
    """Write (N, C, H, W) frames in [0, 1] as a looping GIF at `fps` frames per second, each frame enlarged by the
    smallest whole factor that makes it at least `min_side` pixels (nearest neighbour: the pixels stay sharp).
    Returns what was written, in words."""
    factor = max(1, math.ceil(min_side / frames.shape[-1]))
    pixels = to_pixels(frames.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2))
    images = [Image.fromarray(p) for p in pixels]
    path.parent.mkdir(parents=True, exist_ok=True)
    # GIF times frames in centiseconds; Pillow rounds the milliseconds given to them.
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return f"an animation of {len(images)} frames ({fps:g} per second, {images[0].width} px) to {path}"


def _write_png_folder(images: torch.Tensor, folder: Path) -> str:
    """Numbered PNG files (000000.png, ...): the input FID tools expect. A folder with PNGs in it is refused, so
    no sample of an earlier call is scored with these."""
    if folder.is_dir() and any(folder.glob("*.png")):
        raise UserError(f"--out {folder}/ already holds PNG files; choose an empty or new folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {folder}/: cannot create the folder ({e.strerror})") from None
    for i, pixels in enumerate(to_pixels(images)):
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")
    return f"{len(images)} numbered PNG files to {folder}/"
