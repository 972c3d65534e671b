"""`dcgan train-classifier`: trains the MNIST feature network (dcgan/classifier.py) from a seed.

Deterministic on one machine for a given seed, thread count and training file: weights init, batch
order, augmentation and dropout all come from seeded streams, and torch runs in deterministic mode.
Another CPU or torch build may round differently; the accuracy then agrees to about 0.1%.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from dcgan import __version__
from dcgan.checkpoint import save_weights
from dcgan.classifier import FORMAT, METADATA_KEY, MNISTClassifier, embed_and_classify
from dcgan.config import DataConfig
from dcgan.data import ensure_dataset, load_images, load_labels, split_sha256
from dcgan.rng import derive_seed

_SHIFT = 2  # random translations of up to 2 pixels: the cheapest augmentation that helps MNIST CNNs


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, 28, 28) -> each image moved by its own random (dy, dx) in [-2, 2], zeros shifted in."""
    n, size = len(images), images.shape[-1]
    padded = F.pad(images, (_SHIFT, _SHIFT, _SHIFT, _SHIFT))
    offsets = torch.randint(0, 2 * _SHIFT + 1, (2, n, 1), generator=generator)
    rows = (offsets[0] + torch.arange(size))[:, :, None]
    cols = (offsets[1] + torch.arange(size))[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols]


@torch.no_grad()
def set_feature_scale(model: MNISTClassifier, images: torch.Tensor) -> None:
    """Scale each feature block to unit RMS over the (unaugmented) training images; see MNISTClassifier."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for batch in images.split(1000):
        blocks, _ = model.unscaled_blocks(batch.float().div(255).unsqueeze(1))
        sums += torch.stack([b.double().square().mean(1).sum() for b in blocks])
    model.feature_scale.copy_((sums / len(images)).sqrt())


def accuracy_on_test_split(model: MNISTClassifier, data: DataConfig) -> float:
    """Top-1 accuracy on the MNIST test split."""
    images = load_images(data, train=False).float().div(255).unsqueeze(1)
    _, probs = embed_and_classify(model.eval(), images)
    return (probs.argmax(1) == load_labels(data, train=False)).float().mean().item()


def train_classifier(
    data_root: str,
    out: Path,
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    threads: int = 1,
    limit: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Train on the training split (first `limit` images if set), write safetensors with metadata, return it."""
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)  # the thread count can change float rounding, so it is part of the recipe
    torch.use_deterministic_algorithms(True)
    try:
        return _train(data_root, out, seed, epochs, batch_size, lr, threads, limit, log)
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def _train(
    data_root: str, out: Path, seed: int, epochs: int, batch_size: int, lr: float, threads: int, limit: int, log
) -> dict:
    data = DataConfig(root=data_root, limit=limit)
    ensure_dataset(data)
    images, labels = load_images(data), load_labels(data)
    torch.manual_seed(seed)  # weights and dropout
    model = MNISTClassifier()
    steps_per_epoch = len(images) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # One-cycle: warm up, then anneal to ~0; reaches >99% in a few epochs without tuning a schedule.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    stream = torch.Generator().manual_seed(derive_seed(seed, "classifier-data"))
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=stream)[: steps_per_epoch * batch_size]
        total = 0.0
        for batch in order.view(steps_per_epoch, batch_size):
            x = shift_images(images[batch], stream).float().div(255).unsqueeze(1)
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / steps_per_epoch:.4f}")
    seconds = time.perf_counter() - started
    set_feature_scale(model, images)
    accuracy = accuracy_on_test_split(model, data)
    log(f"test accuracy {accuracy:.2%} after {seconds:.0f} s")
    limit_arg = f" --limit {limit}" if limit else ""
    training = {
        "format": FORMAT,
        "command": f"dcgan train-classifier --seed {seed} --epochs {epochs} --batch-size {batch_size} "
        f"--lr {lr} --threads {threads}{limit_arg} --out {out.name}",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "threads": threads,
        "train_images_sha256": split_sha256(data, train=True),
        "train_images": len(images),
        "test_accuracy": round(accuracy, 6),
        "feature_scale": model.feature_scale.tolist(),
        "versions": f"dcgan {__version__}, torch {torch.__version__}",
    }
    # The same command on the same machine must write the same bytes: no timings, and one metadata key
    # (safetensors writes several keys in a random order).
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, model.state_dict(), {METADATA_KEY: json.dumps(training)})
    return training
