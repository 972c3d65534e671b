"""The shareable generator file and what is made from it: grids (PNG) and digit arrays (.npy).

`generator.safetensors` holds G's weights and BatchNorm buffers; its metadata holds the model config
and the pixel range it was trained on, so it loads with no training code, config or pickle.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import nn
from torch.nn import functional as F

from dcgan.checkpoint import AVERAGE_FILE, GENERATOR_FORMAT, latest_valid, read_weights, save_weights
from dcgan.checkpoint import FORMAT as CHECKPOINT_FORMAT
from dcgan.config import Config, ModelConfig, to_dict
from dcgan.data import from_model_range
from dcgan.errors import UserError
from dcgan.models import build_generator

GENERATOR_FILE = "generator.safetensors"
EXPORTED_FILE = "model.safetensors"  # in a folder written by `dcgan export` (dcgan/export.py)


def generator_metadata(cfg: Config, step: int, weights: str = "last") -> dict[str, str]:
    """`weights`: "last" (the training iterate) or "ema" (the moving average, dcgan/ema.py)."""
    return {
        "format": GENERATOR_FORMAT,
        "model": json.dumps(to_dict(cfg.model)),
        "pixel_range": cfg.data.pixel_range,
        "step": str(step),
        "weights": weights,
    }


def export_generator(path: Path, generator: nn.Module, cfg: Config, step: int, weights: str = "last") -> None:
    save_weights(path, generator.state_dict(), generator_metadata(cfg, step, weights))


def resolve_generator_file(path: Path) -> Path:
    """A generator file, an exported model folder, or a run folder: its final generator, else its newest valid
    checkpoint's.

    In a checkpoint folder the moving average of G (what the run sampled and evaluated) wins over
    the training weights.
    """
    if path.is_file():
        return path
    if (path / EXPORTED_FILE).is_file():
        return path / EXPORTED_FILE
    if path.is_dir():
        newest = path if (path / GENERATOR_FILE).is_file() else latest_valid(path / "checkpoints")
        if newest is not None:
            averaged = newest / AVERAGE_FILE
            return averaged if averaged.is_file() else newest / GENERATOR_FILE
        raise UserError(f"{path} holds no {GENERATOR_FILE} and no valid checkpoint; has the run saved yet?")
    raise UserError(f"{path} does not exist; pass a run folder or a {GENERATOR_FILE} file")


def load_generator(path: Path) -> tuple[nn.Module, str]:
    """(generator in eval mode on CPU, its pixel range) from a file written by `export_generator`."""
    file = resolve_generator_file(path)
    tensors, meta = read_weights(file)
    # A checkpoint's generator.safetensors carries the same model metadata under the checkpoint format.
    if meta.get("format") not in (GENERATOR_FORMAT, CHECKPOINT_FORMAT) or "model" not in meta:
        raise UserError(f"{file} is not a dcgan generator (no '{GENERATOR_FORMAT}' metadata)")
    try:
        model_cfg = ModelConfig(**json.loads(meta["model"]))
        generator = build_generator(model_cfg)
        generator.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{file} does not match the generator its metadata describes ({e})") from None
    return generator.eval(), meta.get("pixel_range", "signed")


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


@torch.no_grad()
def render(generator: nn.Module, noise: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """G(noise) with BatchNorm in eval mode, as images in [0, 1] on the CPU; G's mode is left as it was."""
    was_training = generator.training
    generator.eval()
    try:
        device = next(generator.parameters()).device
        return from_model_range(generator(noise.to(device)).float(), pixel_range).cpu()
    finally:
        generator.train(was_training)


def generate(
    generator: nn.Module, n: int, seed: int, pixel_range: str, truncation: float | None = None
) -> torch.Tensor:
    """n images in [0, 1], shape (n, 1, 28, 28), from a seeded (optionally truncated) noise stream."""
    noise = sample_noise(n, generator.z_dim, torch.Generator().manual_seed(seed), truncation)
    return render(generator, noise, pixel_range)


def make_grid(images: torch.Tensor, padding: int = 2) -> torch.Tensor:
    """(N, 1, H, W) -> one square-ish (1, H', W') grid, `padding` black pixels around every image.

    The same layout as torchvision's make_grid; written with einops because importing torchvision
    costs ~3 s per process (it imports torch._dynamo), paid by every rank and every CLI call.
    """
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    blank = images.new_zeros(rows * columns - len(images), *images.shape[1:])
    tiles = F.pad(torch.cat([images, blank]), (padding, 0, padding, 0))
    grid = rearrange(tiles, "(r c) ch h w -> ch (r h) (c w)", c=columns)
    return F.pad(grid, (0, padding, 0, padding))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 pixels (what PNG files and W&B want)."""
    return images.mul(255).round().clamp(0, 255).to(torch.uint8)


def save_grid(images: torch.Tensor, path: Path) -> torch.Tensor:
    """Write a square-ish grayscale PNG grid of (N, 1, H, W) images in [0, 1]; returns the (1, H, W) grid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images)
    Image.fromarray(to_uint8(grid[0]).numpy(), mode="L").save(path)
    return grid


def write_samples(images: torch.Tensor, out: Path) -> None:
    """`.png`: one grid; `.npy`: uint8 (N, 28, 28), white digit on black like MNIST itself."""
    suffix = out.suffix.lower()
    if suffix == ".png":
        save_grid(images, out)
    elif suffix == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        array = to_uint8(images[:, 0]).numpy()
        np.save(out, array)
    else:
        raise UserError(f"--out {out}: use a .png (grid) or .npy (uint8 array) file name")
