"""The shareable generator file and what is made from it: grids (PNG), arrays (.npy), folders of PNGs.

`generator.safetensors` holds G's weights and BatchNorm buffers; its metadata holds the model config,
the data it was trained on (dataset, image size, channels) and the pixel range, so it loads with no
training code, config or pickle.
"""

from __future__ import annotations

import json
import math
import os
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
from dcgan.rng import derive_seed
from dcgan.rundir import GENERATOR_FILE, RunDir

FIXED_SAMPLES = 64  # an unconditional run's fixed-noise grid: 8 x 8
FIXED_COLUMNS = 8  # a conditional run's: one row per class, the same noise down each column
EXPORTED_FILE = "model.safetensors"  # in a folder written by `dcgan export` (dcgan/export.py)
GENERATOR_DATA_KEYS = ("name", "image_size", "channels", "limit")  # what G learnt; older files: all of MNIST


def generator_metadata(cfg: Config, step: int, weights: str = "last", classes: tuple[str, ...] = ()) -> dict[str, str]:
    """`weights`: "last" (the training iterate) or "ema" (the moving average, dcgan/ema.py); `classes`:
    the data's class names, which a conditional G's class indices stand for."""
    return {
        "format": GENERATOR_FORMAT,
        "model": json.dumps(to_dict(cfg.model)),
        "data": json.dumps({k: getattr(cfg.data, k) for k in GENERATOR_DATA_KEYS}),
        "classes": json.dumps(list(classes)),
        "pixel_range": cfg.data.pixel_range,
        "step": str(step),
        "weights": weights,
    }


def export_generator(
    path: Path, generator: nn.Module, cfg: Config, step: int, weights: str = "last", classes: tuple[str, ...] = ()
) -> None:
    save_weights(path, generator.state_dict(), generator_metadata(cfg, step, weights, classes))


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
        newest = path if (path / GENERATOR_FILE).is_file() else latest_valid(RunDir(path).checkpoints)
        if newest is not None:
            averaged = newest / AVERAGE_FILE
            return averaged if averaged.is_file() else newest / GENERATOR_FILE
        raise UserError(f"{path} holds no {GENERATOR_FILE} and no valid checkpoint; has the run saved yet?")
    raise UserError(f"{path} does not exist; pass a run folder or a {GENERATOR_FILE} file")


def generator_data(meta: dict[str, str]) -> dict:
    """The data a generator file's G was trained on (dataset name, image size, channels, limit)."""
    return {"name": "mnist", "image_size": 28, "channels": 1, "limit": 0} | json.loads(meta.get("data", "{}"))


def load_generator(path: Path) -> tuple[nn.Module, str]:
    """(generator in eval mode on CPU, its pixel range) from a file written by `export_generator`."""
    generator, meta = load_generator_and_metadata(path)
    return generator, meta.get("pixel_range", "signed")


def load_generator_and_metadata(path: Path) -> tuple[nn.Module, dict[str, str]]:
    """(generator in eval mode on CPU, the file's metadata), from a generator file or run folder."""
    file = resolve_generator_file(path)
    tensors, meta = read_weights(file)
    # A checkpoint's generator.safetensors carries the same model metadata under the checkpoint format.
    if meta.get("format") not in (GENERATOR_FORMAT, CHECKPOINT_FORMAT) or "model" not in meta:
        raise UserError(f"{file} is not a dcgan generator (no '{GENERATOR_FORMAT}' metadata)")
    try:
        model_cfg = ModelConfig(**json.loads(meta["model"]))
        data = generator_data(meta)
        generator = build_generator(model_cfg, data["image_size"], data["channels"], len(_stored_classes(meta)))
        generator.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{file} does not match the generator its metadata describes ({e})") from None
    return generator.eval(), meta


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


def class_names(generator: nn.Module, meta: dict[str, str]) -> tuple[str, ...]:
    """The class names a conditional G's indices stand for ((), for an unconditional G)."""
    return _stored_classes(meta) if getattr(generator, "num_classes", 0) else ()


def _stored_classes(meta: dict[str, str]) -> tuple[str, ...]:
    """The class names a generator file records (none before conditional models existed)."""
    return tuple(json.loads(meta.get("classes", "[]")))


def requested_labels(
    classes: tuple[str, ...], n: int, wanted: str | None, per_class: bool
) -> tuple[torch.Tensor | None, int | None]:
    """(class indices to draw, grid columns) for `dcgan sample`: class `wanted` (index or name) n times, or
    with `per_class` n of each class in one row per class; (None, None) leaves the classes uniform."""
    if not classes:
        if wanted is not None or per_class:
            raise UserError("--class and --per-class need a conditional generator (model.conditional=true)")
        return None, None
    if per_class:
        return per_class_labels(len(classes), n), n
    if wanted is None:
        return None, None
    if wanted in classes:
        return torch.full((n,), classes.index(wanted)), None
    if wanted.isdigit() and int(wanted) < len(classes):
        return torch.full((n,), int(wanted)), None
    shown = ", ".join(f"{i} ({name})" for i, name in enumerate(classes))
    raise UserError(f"--class {wanted}: not one of this generator's classes: {shown}")


def fixed_inputs(
    cfg: Config, num_classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """(noise, class indices or None, grid columns or None) of a run's fixed-noise grids, the same at every
    step so that the progress GIF shows G alone changing; a conditional run's has one row per class."""
    stream = torch.Generator().manual_seed(derive_seed(cfg.seed, "fixed"))
    if not num_classes:
        return torch.randn(FIXED_SAMPLES, cfg.model.z_dim, generator=stream).to(device), None, None
    columns = torch.randn(FIXED_COLUMNS, cfg.model.z_dim, generator=stream)
    labels = per_class_labels(num_classes, FIXED_COLUMNS)
    return columns.repeat(num_classes, 1).to(device), labels.to(device), FIXED_COLUMNS


def grid_caption(classes: tuple[str, ...]) -> str | None:
    """What a conditional run's grid shows, named (W&B and TensorBoard captions)."""
    if not classes:
        return None
    return f"one row per class, top to bottom: {', '.join(classes)}; the same noise down each column"


def per_class_labels(num_classes: int, columns: int) -> torch.Tensor:
    """Class k repeated `columns` times, for k = 0, 1, ...: a grid of `columns` columns gets one row per class."""
    return torch.arange(num_classes).repeat_interleave(columns)


@torch.no_grad()
def render(
    generator: nn.Module, noise: torch.Tensor, pixel_range: str, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """G(noise[, labels]) with BatchNorm in eval mode, as images in [0, 1] on the CPU; G's mode is left as it was.
    `labels` (class indices) for a conditional G, None for an unconditional one."""
    was_training = generator.training
    generator.eval()
    try:
        device = next(generator.parameters()).device
        inputs = (noise.to(device),) if labels is None else (noise.to(device), labels.to(device))
        return from_model_range(generator(*inputs).float(), pixel_range).cpu()
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
