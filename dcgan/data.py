"""MNIST loaded once into memory, and a sharded, seeded, resumable batch order.

The whole split (47 MB as uint8) lives on the training device; batches are gathered by index and
normalised on the fly, so there is no DataLoader, no worker and no host round trip per step.
Each epoch's order is a permutation derived from (seed, epoch) alone, so a resumed run only needs
the epoch and the position inside it to continue exactly.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import torch

from dcgan.checkpoint import file_sha256
from dcgan.config import DataConfig
from dcgan.errors import UserError
from dcgan.rng import derive_seed

_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DOWNLOAD_TIMEOUT_S = 30


def raw_folder(cfg: DataConfig) -> Path:
    return Path(cfg.root) / "MNIST" / "raw"


def missing_files(cfg: DataConfig) -> list[str]:
    folder = raw_folder(cfg)
    return [name for name in _RAW_FILES if not (folder / name).is_file()]


def ensure_dataset(cfg: DataConfig) -> None:
    """Download MNIST if it is missing and allowed; raise a one-line UserError if it stays missing.

    Call on the main process only (other ranks wait): two ranks downloading into one folder race.
    """
    if not missing_files(cfg):
        return
    folder = raw_folder(cfg)
    if cfg.download:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # a silent network must not hang the job
        try:
            # torchvision only here: importing it costs ~3 s per process (it pulls in torch._dynamo).
            from torchvision.datasets import MNIST

            MNIST(cfg.root, train=True, download=True)
        except (RuntimeError, OSError) as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserError(
                f"MNIST is missing and could not be downloaded ({reason}); put "
                f"{', '.join(_RAW_FILES)} (decompressed) in {folder}/ or set data.root to a folder that has them"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
        return
    raise UserError(
        f"MNIST files missing in {folder}/: {', '.join(missing_files(cfg))}; put the decompressed IDX files "
        "there, set data.root to a folder that has them, or set data.download=true"
    )


_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # IDX: unsigned bytes, 3 and 1 dimensions


def _idx_header(path: Path, dims: int) -> tuple[int, list[int]]:
    try:
        with path.open("rb") as f:
            header = f.read(4 + 4 * dims)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror})") from None
    if len(header) < 4 + 4 * dims:
        raise UserError(f"{path} is too short to be an MNIST IDX file ({len(header)} bytes)")
    magic, *sizes = struct.unpack(f">{1 + dims}I", header)
    return magic, sizes


def check_idx_files(cfg: DataConfig, train: bool = True) -> None:
    """Check the split's IDX headers and sizes, so a wrong or damaged file fails in one clear line."""
    prefix = "train" if train else "t10k"
    images, labels = raw_folder(cfg) / f"{prefix}-images-idx3-ubyte", raw_folder(cfg) / f"{prefix}-labels-idx1-ubyte"
    magic, (count, rows, cols) = _idx_header(images, 3)
    if magic != _IMAGES_MAGIC:
        raise UserError(f"{images} is not an MNIST image file (magic {magic:#010x}, expected {_IMAGES_MAGIC:#010x})")
    if (rows, cols) != (28, 28):
        raise UserError(f"{images} holds {rows}x{cols} images; MNIST images are 28x28")
    expected = 16 + count * rows * cols
    if images.stat().st_size != expected:
        raise UserError(
            f"{images} has {images.stat().st_size} bytes but its header promises {count} images "
            f"({expected} bytes): truncated or damaged, download it again"
        )
    magic, (label_count,) = _idx_header(labels, 1)
    if magic != _LABELS_MAGIC:
        raise UserError(f"{labels} is not an MNIST label file (magic {magic:#010x}, expected {_LABELS_MAGIC:#010x})")
    if labels.stat().st_size != 8 + label_count:
        raise UserError(f"{labels} is truncated or damaged ({labels.stat().st_size} bytes for {label_count} labels)")
    if label_count != count:
        raise UserError(f"{labels} has {label_count} labels for {count} images in {images.name}")


def _read_idx(cfg: DataConfig, train: bool, kind: str, header_bytes: int) -> torch.Tensor:
    """The split's `kind` (images | labels) file after its header, as flat uint8, first `cfg.limit` items only."""
    check_idx_files(cfg, train)
    path = raw_folder(cfg) / f"{'train' if train else 't10k'}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    try:
        data = bytearray(path.read_bytes())
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror})") from None
    values = torch.frombuffer(data, dtype=torch.uint8, offset=header_bytes)
    item = 28 * 28 if kind == "images" else 1
    return values[: cfg.limit * item] if cfg.limit else values


def load_images(cfg: DataConfig, train: bool = True) -> torch.Tensor:
    """The split's images as one uint8 tensor of shape (N, 28, 28), white digits on black."""
    return _read_idx(cfg, train, "images", 16).view(-1, 28, 28)


def load_labels(cfg: DataConfig, train: bool = True) -> torch.Tensor:
    """The split's digit labels as int64 (N,), in the order of `load_images`."""
    return _read_idx(cfg, train, "labels", 8).long()


def split_sha256(cfg: DataConfig, train: bool = True) -> str:
    """sha256 of the split's image file: what caches computed from the data are keyed by."""
    return file_sha256(raw_folder(cfg) / f"{'train' if train else 't10k'}-images-idx3-ubyte")


def to_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [-1, 1] (`signed`) or [0, 1] (`unit`)."""
    x = images.unsqueeze(1).float()
    return x / 127.5 - 1.0 if pixel_range == "signed" else x / 255.0


def from_model_range(images: torch.Tensor, pixel_range: str) -> torch.Tensor:
    """Generator output -> [0, 1], the inverse of `to_model_range`, clamped."""
    x = (images + 1.0) / 2.0 if pixel_range == "signed" else images
    return x.clamp(0.0, 1.0)


class ShardedBatches:
    """This rank's batches of one epoch, as index rows into the in-memory split.

    Step s of an epoch takes the global batch perm[s*W*B : (s+1)*W*B] and rank r its r-th slice of B,
    so shards are disjoint, every rank runs the same number of steps (the last W*B-1 or fewer samples
    of each permutation are left out, different ones each epoch), and the order is fixed by the seed.
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int, rank: int, seed: int):
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise UserError(
                f"{num_samples} training images cannot fill one global batch of {global_batch} "
                f"(train.batch_size={batch_size} x {world_size} processes); lower train.batch_size"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.steps_per_epoch = num_samples // global_batch

    def indices(self, epoch: int) -> torch.Tensor:
        """(steps_per_epoch, batch_size) int64 indices for this rank in `epoch`."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "data", epoch))
        perm = torch.randperm(self.num_samples, generator=generator)
        used = perm[: self.steps_per_epoch * self.batch_size * self.world_size]
        return used.view(self.steps_per_epoch, self.world_size, self.batch_size)[:, self.rank]
