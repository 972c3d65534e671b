"""MNIST and Fashion-MNIST: IDX files in torchvision's layout (`ROOT/MNIST/raw/`, `ROOT/FashionMNIST/raw/`).

Both are 28x28 grey images with 10 classes, in the same file format; only the folder, the download
and the class names differ. A split is read whole into memory as uint8.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.config import DataConfig
from dcgan.errors import UserError
from dcgan.io.files import file_sha256


@dataclass(frozen=True)
class IdxSource:
    title: str
    """How messages name it."""
    folder: str
    """torchvision's folder under the root, and its dataset class in torchvision.datasets."""
    classes: tuple[str, ...]


SOURCES = {
    "mnist": IdxSource("MNIST", "MNIST", tuple("0123456789")),
    "fashion_mnist": IdxSource(
        "Fashion-MNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}
_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DOWNLOAD_TIMEOUT_S = 30


def raw_folder(cfg: DataConfig) -> Path:
    return Path(cfg.root) / SOURCES[cfg.name].folder / "raw"


def missing_files(cfg: DataConfig) -> list[str]:
    folder = raw_folder(cfg)
    return [name for name in _RAW_FILES if not (folder / name).is_file()]


def ensure_dataset(cfg: DataConfig) -> None:
    """Download the dataset if it is missing and allowed; raise a one-line UserError if it stays missing.

    Call on the main process only (other ranks wait): two ranks downloading into one folder race.
    """
    if not missing_files(cfg):
        return
    folder, title = raw_folder(cfg), SOURCES[cfg.name].title
    if cfg.download:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # a silent network must not hang the job
        try:
            # torchvision only here: importing it costs ~3 s per process (it pulls in torch._dynamo).
            import torchvision.datasets

            getattr(torchvision.datasets, SOURCES[cfg.name].folder)(cfg.root, train=True, download=True)
        except (RuntimeError, OSError) as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{title} is missing and could not be downloaded ({reason}); put "
                f"{', '.join(_RAW_FILES)} (decompressed) in {folder}/ or set data.root to a folder that has them"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
        return
    raise UserError(
        f"{title} files missing in {folder}/: {', '.join(missing_files(cfg))}; put the decompressed IDX files "
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
        raise UserError(f"{path} is too short to be an IDX file ({len(header)} bytes)")
    magic, *sizes = struct.unpack(f">{1 + dims}I", header)
    return magic, sizes


def _split_file(cfg: DataConfig, train: bool, kind: str) -> Path:
    return raw_folder(cfg) / f"{'train' if train else 't10k'}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


def check_idx_files(cfg: DataConfig, train: bool = True) -> None:
    """Check the split's IDX headers and sizes, so a wrong or damaged file fails in one clear line."""
    images, labels = _split_file(cfg, train, "images"), _split_file(cfg, train, "labels")
    magic, (count, rows, cols) = _idx_header(images, 3)
    if magic != _IMAGES_MAGIC:
        raise UserError(f"{images} is not an IDX image file (magic {magic:#010x}, expected {_IMAGES_MAGIC:#010x})")
    if (rows, cols) != (28, 28):
        raise UserError(f"{images} holds {rows}x{cols} images; {SOURCES[cfg.name].title} images are 28x28")
    expected = 16 + count * rows * cols
    if images.stat().st_size != expected:
        raise UserError(
            f"{images} has {images.stat().st_size} bytes but its header promises {count} images "
            f"({expected} bytes): truncated or damaged, download it again"
        )
    magic, (label_count,) = _idx_header(labels, 1)
    if magic != _LABELS_MAGIC:
        raise UserError(f"{labels} is not an IDX label file (magic {magic:#010x}, expected {_LABELS_MAGIC:#010x})")
    if labels.stat().st_size != 8 + label_count:
        raise UserError(f"{labels} is truncated or damaged ({labels.stat().st_size} bytes for {label_count} labels)")
    if label_count != count:
        raise UserError(f"{labels} has {label_count} labels for {count} images in {images.name}")


def _read_idx(cfg: DataConfig, train: bool, kind: str, header_bytes: int) -> torch.Tensor:
    """The split's `kind` (images | labels) file after its header, as flat uint8, first `cfg.limit` items only."""
    check_idx_files(cfg, train)
    path = _split_file(cfg, train, kind)
    try:
        data = bytearray(path.read_bytes())
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror})") from None
    values = torch.frombuffer(data, dtype=torch.uint8, offset=header_bytes)
    item = 28 * 28 if kind == "images" else 1
    return values[: cfg.limit * item] if cfg.limit else values


def load_images(cfg: DataConfig, train: bool = True) -> torch.Tensor:
    """The split's images as one uint8 tensor of shape (N, 28, 28), white on black."""
    return _read_idx(cfg, train, "images", 16).view(-1, 28, 28)


def load_labels(cfg: DataConfig, train: bool = True) -> torch.Tensor:
    """The split's class labels as int64 (N,), in the order of `load_images`."""
    return _read_idx(cfg, train, "labels", 8).long()


def split_sha256(cfg: DataConfig, train: bool = True) -> str:
    """sha256 of the split's image file: what caches computed from the data are keyed by."""
    return file_sha256(_split_file(cfg, train, "images"))
