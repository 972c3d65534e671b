"""`dcgan train-classifier`: trains a feature network (dcgan/eval/networks.py) from a seed.

For MNIST and Fashion-MNIST it trains on the training split and reports accuracy on the test split;
for a labelled folder it holds out a seeded tenth of the images for that report. Deterministic on one
machine for a given seed, thread count and data: weights init, batch order, augmentation and dropout
all come from seeded streams, and torch runs in deterministic mode. Another CPU or torch build may
round differently; the accuracy then agrees to about 0.1%.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from dcgan import __version__
from dcgan.config import DataConfig
from dcgan.data import ensure_dataset, fingerprint, has_test_split, load_dataset
from dcgan.errors import UserError
from dcgan.eval.networks import (
    FORMAT,
    FORMAT_MNIST,
    METADATA_KEY,
    MNIST_SPEC,
    FeatureNetwork,
    NetworkSpec,
    embed_and_classify,
)
from dcgan.io.files import save_weights
from dcgan.rng import derive_seed

_SHIFT = 2  # random translations of up to 2 pixels: the cheapest augmentation that helps these CNNs
HELD_OUT = 10  # a folder without a test split keeps every 10th image of a seeded permutation out of training


@dataclass
class Recipe:
    seed: int = 0
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    """Peak learning rate of the one-cycle schedule."""
    threads: int = 1
    """torch threads: the thread count can change float rounding, so it is part of the recipe."""


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) -> each image moved by its own random (dy, dx) in [-2, 2], zeros shifted in."""
    n, size = len(images), images.shape[-1]
    padded = F.pad(images, (_SHIFT, _SHIFT, _SHIFT, _SHIFT)).movedim(1, -1)
    offsets = torch.randint(0, 2 * _SHIFT + 1, (2, n, 1), generator=generator)
    rows = (offsets[0] + torch.arange(size))[:, :, None]
    cols = (offsets[1] + torch.arange(size))[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols].movedim(-1, 1)


@torch.no_grad()
def set_feature_scale(model: FeatureNetwork, images: torch.Tensor) -> None:
    """Scale each feature block to unit RMS over the (unaugmented) training images; see FeatureNetwork."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for batch in images.split(1000):
        blocks, _ = model.unscaled_blocks(batch.float().div(255))
        sums += torch.stack([b.double().square().mean(1).sum() for b in blocks])
    model.feature_scale.copy_((sums / len(images)).sqrt())


def accuracy(model: FeatureNetwork, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy on uint8 images (N, C, S, S)."""
    _, probs = embed_and_classify(model.eval(), images.float().div(255))
    return (probs.argmax(1) == labels).float().mean().item()


Split = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, C, S, S), int64 labels (N,)


def _splits(data: DataConfig, seed: int) -> tuple[Split, Split, tuple[str, ...]]:
    """(training split, test split, class names): the test split where there is one, else a held-out tenth."""
    train = load_dataset(data)
    if train.labels is None or len(train.classes) < 2:
        raise UserError(
            f"dcgan train-classifier needs labelled images: put each class in its own subfolder of {data.root} "
            f"(found {len(train.classes)} class{'es' if len(train.classes) != 1 else ''})"
        )
    if has_test_split(data):
        test = load_dataset(data, train=False)
        return (train.images, train.labels), (test.images, test.labels), train.classes
    if len(train.images) < 2 * HELD_OUT:
        raise UserError(
            f"{data.root} holds {len(train.images)} images; a feature network needs at least {2 * HELD_OUT}"
        )
    order = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(derive_seed(seed, "held-out")))
    test, kept = order[: len(order) // HELD_OUT], order[len(order) // HELD_OUT :]
    return (train.images[kept], train.labels[kept]), (train.images[test], train.labels[test]), train.classes


def network_spec(data: DataConfig, name: str, images: torch.Tensor, classes: tuple[str, ...]) -> NetworkSpec:
    """MNIST keeps its original spec (and file format), so the shipped file stays reproducible byte for byte."""
    if data.name == "mnist" and name in ("", "mnist"):
        return MNIST_SPEC
    pixels = images.float().div(255)
    return NetworkSpec(
        name or data.name, data.name, data.channels, data.image_size, classes,
        round(pixels.mean().item(), 4), round(pixels.std().item(), 4),
    )  # fmt: skip


def train_classifier(
    data: DataConfig, out: Path, recipe: Recipe, name: str = "", log: Callable[[str], None] = print
) -> dict:
    """Train on the data (its first `data.limit` images if set), write safetensors with metadata, return it."""
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    try:
        ensure_dataset(data)
        (images, labels), test, classes = _splits(data, recipe.seed)
        model, seconds = _fit(network_spec(data, name, images, classes), images, labels, recipe, log)
        set_feature_scale(model, images)
        test_accuracy = accuracy(model, *test)
        log(f"test accuracy {test_accuracy:.2%} on {len(test[0])} images after {seconds:.0f} s")
        training = _record(data, recipe, len(images), test_accuracy, model, out)
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])
    # The same command on the same machine must write the same bytes: no timings, and one metadata key
    # (safetensors writes several keys in a random order).
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, model.state_dict(), {METADATA_KEY: json.dumps(training)})
    return training


def _fit(
    spec: NetworkSpec, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe, log: Callable[[str], None]
) -> tuple[FeatureNetwork, float]:
    torch.manual_seed(recipe.seed)  # weights and dropout
    model = FeatureNetwork(spec)
    steps_per_epoch = len(images) // recipe.batch_size
    if steps_per_epoch < 1:
        raise UserError(f"{len(images)} training images cannot fill one batch of --batch-size {recipe.batch_size}")
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    # One-cycle: warm up, then anneal to ~0; reaches >99% on MNIST in a few epochs without tuning a schedule.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    stream = torch.Generator().manual_seed(derive_seed(recipe.seed, "classifier-data"))
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(images), generator=stream)[: steps_per_epoch * recipe.batch_size]
        total = 0.0
        for batch in order.view(steps_per_epoch, recipe.batch_size):
            x = shift_images(images[batch], stream).float().div(255)
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{recipe.epochs}: train loss {total / steps_per_epoch:.4f}")
    return model, time.perf_counter() - started


def _record(data: DataConfig, recipe: Recipe, n: int, test_accuracy: float, model: FeatureNetwork, out: Path) -> dict:
    """The file's training record: the command that makes it, the data it saw, its accuracy."""
    spec = model.spec
    args = "" if spec is MNIST_SPEC else f" --dataset {data.name}"
    if not has_test_split(data):
        args += f" --image-size {data.image_size} --channels {data.channels}"
    if spec is not MNIST_SPEC and spec.name != data.name:
        args += f" --name {spec.name}"
    args += (
        f" --seed {recipe.seed} --epochs {recipe.epochs} --batch-size {recipe.batch_size} --lr {recipe.lr} "
        f"--threads {recipe.threads}"
    )
    training = {
        "format": FORMAT_MNIST if spec is MNIST_SPEC else FORMAT,
        "command": f"dcgan train-classifier{args}{f' --limit {data.limit}' if data.limit else ''} --out {out.name}",
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "threads": recipe.threads,
        "train_images_sha256": fingerprint(data),
        "train_images": n,
        "test_accuracy": round(test_accuracy, 6),
        "feature_scale": model.feature_scale.tolist(),
        "versions": f"dcgan {__version__}, torch {torch.__version__}",
    }
    if spec is not MNIST_SPEC:
        training["network"] = asdict(spec)
    return training
