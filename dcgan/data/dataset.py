"""The one interface to every dataset (`data.name`): uint8 images, optional labels, class names.

`mnist` and `fashion_mnist` come from IDX files (dcgan/data/idx.py) and have a test split; `folder`
(dcgan/data/folder.py) and `hf` (dcgan/data/hf.py) are decoded once into a cache entry
(dcgan/data/building.py) and have none. The trainer, the evaluator and train-classifier only see
`Dataset`, so none of them knows which dataset it reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from dcgan.config import DataConfig
from dcgan.data import cache, folder, hf, idx
from dcgan.data.building import Cached, ensure_entry, summary
from dcgan.data.placement import in_host_memory
from dcgan.distributed import on_main


@dataclass
class Dataset:
    images: torch.Tensor
    """uint8 (N, C, H, W), bright content on dark for MNIST-like data; memory-mapped from the cache file
    when it does not fit the host budget (`mapped`)."""
    labels: torch.Tensor | None
    """int64 (N,) class indices, or None for a source without classes."""
    classes: tuple[str, ...]
    """Class names, in label order; empty without labels."""
    mapped: str = ""
    """Why and from where the images are memory-mapped (a start line); empty when they are in memory."""

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]


def has_test_split(cfg: DataConfig) -> bool:
    return cfg.name in idx.SOURCES


def _cached(cfg: DataConfig) -> Cached:
    if cfg.name == "hf":
        return hf.source(cfg)
    listing = folder.scan(cfg)
    return Cached(listing, str(listing.root), listing.content, listing.classes, listing.labels, {})


_prepared: dict[str, Path] = {}
"""The cache entry each source resolved to at this process's last `ensure_dataset`: `load_dataset` and
`fingerprint` then open it without listing the source again (listing 20,000 files takes ~0.8 s on the
development VM, so a million take most of a minute) and see the very images the run prepared, even if the
folder changes meanwhile."""


def _source_id(cfg: DataConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)


def _prepared_entry(cfg: DataConfig) -> tuple[Path, dict] | None:
    """(entry, info) that this process's last ensure_dataset of `cfg` resolved to, if it is still there."""
    entry = _prepared.get(_source_id(cfg))
    info = cache.read_info(entry) if entry is not None else None
    return (entry, info) if info is not None else None


def ensure_dataset(cfg: DataConfig, acc: Accelerator | None = None) -> None:
    """Before any rank loads (a collective of every rank under `acc`): download a missing IDX dataset (the
    main process, if allowed), or decode a folder or HF dataset into its cache entry (every rank its share),
    the main process saying what it holds; a one-line UserError if that is impossible."""
    if has_test_split(cfg):
        if acc is None:
            idx.ensure_dataset(cfg)
        else:
            on_main(acc, lambda: idx.ensure_dataset(cfg))
        return
    cached = _cached(cfg)
    entry, info, how = ensure_entry(cached, cfg, acc)
    _prepared[_source_id(cfg)] = entry
    if acc is None or acc.is_main_process:
        print(summary(cached, cfg, info, how), flush=True)


def load_dataset(cfg: DataConfig, train: bool = True, sharing: int = 1) -> Dataset:
    """The training split (or the test split, `train=False`, where there is one). A cached source is read
    into host memory when `sharing` copies (the processes of this machine) fit `data.host_budget_gb` and the
    free memory, else memory-mapped."""
    if has_test_split(cfg):
        images = idx.load_images(cfg, train)
        return Dataset(images.view(-1, 1, 28, 28), idx.load_labels(cfg, train), idx.SOURCES[cfg.name].classes)
    if not train:
        raise ValueError(f"data.name={cfg.name} has no test split")
    prepared = _prepared_entry(cfg)
    # Without an ensure_dataset in this process: list the source, and decode it if nobody has.
    entry, info = prepared or ensure_entry(_cached(cfg), cfg)[:2]
    fits, why = in_host_memory(int(np.prod(info["shape"])), cfg.host_budget_gb, sharing)
    images = torch.from_numpy(cache.open_images(entry, info, mapped=not fits))
    labels = torch.from_numpy(cache.read_labels(entry)) if info["classes"] else None
    mapped = "" if fits else f"{why}: memory-mapped from {entry / cache.IMAGES}"
    return Dataset(images, labels, tuple(info["classes"]), mapped)


def fingerprint(cfg: DataConfig, train: bool = True) -> str:
    """A hash of the split's content (IDX: the image file's sha256; folder, hf: its cache key), for caches of
    anything computed from it."""
    if has_test_split(cfg):
        return idx.split_sha256(cfg, train)
    prepared = _prepared_entry(cfg)
    key = prepared[1].get("key") if prepared else None  # entries built since 2026-12-05 record it
    return key or _cached(cfg).key(cfg)


def to_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float in [-1, 1] (`signed`) or [0, 1] (`unit`)."""
    x = images.float()
    return x / 127.5 - 1.0 if pixel_range == "signed" else x / 255.0


def from_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """Generator output -> [0, 1], the inverse of `to_model_range`, clamped."""
    x = (images + 1.0) / 2.0 if pixel_range == "signed" else images
    return x.clamp(0.0, 1.0)
