"""Wiring a run from its config: the data on the device, this rank's shard of it, G and D with their optimisers
(prepared by Accelerate), the per-rank noise stream and G's moving average.

The order of the seeds is part of the recipe: every rank builds the networks from `seed` (identical initial
weights), then moves to its own torch and noise streams; a resumed run depends on it being kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator

from dcgan.config import Config
from dcgan.data import ImageStore, ShardedBatches, load_dataset
from dcgan.distributed import agree, processes_here
from dcgan.errors import UserError
from dcgan.models import build_models
from dcgan.rng import derive_seed
from dcgan.runtime import bare_model, configure_backends, memory_format
from dcgan.train.ema import GeneratorAverage


@dataclass
class Parts:
    images: ImageStore
    batches: ShardedBatches
    classes: tuple[str, ...]  # a conditional run's class names; () otherwise
    labels: torch.Tensor | None  # the class of each image, where the batches' indices are (conditional runs)
    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator  # this rank's noise stream: z, fake classes, augmentations
    average: GeneratorAverage | None

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.labels is not None else 0


def build(cfg: Config, acc: Accelerator) -> Parts:
    # Machines may hold different copies of the data; the processes of one machine share its memory.
    sharing = processes_here(acc)
    dataset = agree(acc, lambda: load_dataset(cfg.data, sharing=sharing))
    images = ImageStore(dataset.images, acc.device, cfg.data.device_budget_gb, acc.is_main_process, dataset.mapped)
    classes, labels = _labels(cfg, dataset, images.index_device)
    batches = ShardedBatches(len(images), cfg.train.batch_size, acc.num_processes, acc.process_index, cfg.seed)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    num_classes = len(classes) if labels is not None else 0
    G, D, opt_g, opt_d = _networks(cfg, acc, dataset.image_size, dataset.channels, num_classes)
    torch.manual_seed(derive_seed(cfg.seed, "torch", acc.process_index))
    noise = torch.Generator(acc.device).manual_seed(derive_seed(cfg.seed, "noise", acc.process_index))
    decay = cfg.train.ema_decay
    average = GeneratorAverage(bare_model(acc, G), decay) if decay else None
    return Parts(images, batches, classes, labels, G, D, opt_g, opt_d, noise, average)


def _networks(cfg: Config, acc: Accelerator, image_size: int, channels: int, num_classes: int) -> tuple:
    """(G, D, G's optimiser, D's optimiser), on the device in the layout and precision the run asks for."""
    generator, discriminator = build_models(cfg.model, image_size, channels, num_classes)
    if cfg.train.sync_batchnorm and acc.num_processes > 1:
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    if memory_format(cfg.train, acc.device) == "channels_last":
        generator = generator.to(memory_format=torch.channels_last)
        discriminator = discriminator.to(memory_format=torch.channels_last)
    configure_backends(cfg.train, acc.device)
    # Fused Adam: one kernel for all parameters, and on a GPU the fp16 scaler's skip check stays on
    # the device (no host sync per step). The parameters must be on the device when it is created.
    generator, discriminator = generator.to(acc.device), discriminator.to(acc.device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas, fused=True)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas, fused=True)
    return acc.prepare(generator, discriminator, opt_g, opt_d)


def _labels(cfg: Config, dataset, device: torch.device) -> tuple[tuple[str, ...], torch.Tensor | None]:
    """(class names, labels on `device`) for a conditional model; ((), None) otherwise."""
    if not cfg.model.conditional:
        return (), None
    if dataset.labels is None or len(dataset.classes) < 2:
        raise UserError(
            f"model.conditional=true needs labelled data with 2 or more classes; {cfg.data.root} has none "
            "(a folder's classes are its first-level subfolders)"
        )
    return dataset.classes, dataset.labels.to(device)
