"""The one interface to every dataset (`data.name`): uint8 images, optional labels, class names.

`mnist` and `fashion_mnist` come from IDX files (dcgan/data/idx.py) and have a test split; `folder`
is your own images (dcgan/data/folder.py) and has none. The trainer, the evaluator and
train-classifier only see `Dataset`, so none of them knows which dataset it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dcgan.config import DataConfig
from dcgan.data import folder, idx


@dataclass
class Dataset:
    images: torch.Tensor
    """uint8 (N, C, H, W), bright content on dark for MNIST-like data."""
    labels: torch.Tensor | None
    """int64 (N,) class indices, or None for a folder without class subfolders."""
    classes: tuple[str, ...]
    """Class names, in label order; empty without labels."""

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]


def has_test_split(cfg: DataConfig) -> bool:
    return cfg.name in idx.SOURCES


def ensure_dataset(cfg: DataConfig) -> None:
    """Main process, before any rank loads: download a missing IDX dataset (if allowed), or decode and
    cache a folder, saying what it holds; a one-line UserError if that is impossible."""
    if has_test_split(cfg):
        idx.ensure_dataset(cfg)
    else:
        print(folder.prepare(cfg), flush=True)


def load_dataset(cfg: DataConfig, train: bool = True) -> Dataset:
    """The training split (or the test split, `train=False`, where there is one), whole, in host memory."""
    if has_test_split(cfg):
        images = idx.load_images(cfg, train)
        return Dataset(images.view(-1, 1, 28, 28), idx.load_labels(cfg, train), idx.SOURCES[cfg.name].classes)
    if not train:
        raise ValueError(f"data.name={cfg.name} has no test split")
    images, labels, classes = folder.load(cfg)
    return Dataset(torch.from_numpy(images), None if labels is None else torch.from_numpy(labels), classes)


def fingerprint(cfg: DataConfig, train: bool = True) -> str:
    """A hash of the split's content (IDX: the image file's sha256; folder: its cache key), for caches of
    anything computed from it."""
    if has_test_split(cfg):
        return idx.split_sha256(cfg, train)
    return folder.load_key(cfg)


def to_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float in [-1, 1] (`signed`) or [0, 1] (`unit`)."""
    x = images.float()
    return x / 127.5 - 1.0 if pixel_range == "signed" else x / 255.0


def from_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """Generator output -> [0, 1], the inverse of `to_model_range`, clamped."""
    x = (images + 1.0) / 2.0 if pixel_range == "signed" else images
    return x.clamp(0.0, 1.0)
