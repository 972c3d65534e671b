"""A folder of your own images (`data.name=folder`): found recursively, listed in sorted path order.

Labels follow the ImageFolder convention: when the root holds no images itself, each first-level
subfolder is a class (names sorted). The listing is a decoding source (dcgan/data/decoding.py); its
content for the cache key is every file's relative path, size and mtime (dcgan/data/building.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dcgan.config import DataConfig
from dcgan.errors import UserError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Listing:
    """The images under a root, sorted by relative path, and their classes (empty when unlabelled)."""

    root: Path
    files: list[str]
    stats: list[list]
    classes: tuple[str, ...]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.files)

    def open(self, i: int) -> Image.Image:
        return Image.open(self.root / self.files[i])

    def where(self, i: int) -> str:
        return str(self.root / self.files[i])

    def name(self, i: int) -> str:
        return self.files[i]

    @property
    def content(self) -> list[list]:
        """What the cache key hashes: (relative path, size, mtime_ns) of every file."""
        return self.stats


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def _images_under(folder: Path, root: Path) -> list[str]:
    """Relative paths of the images under `folder`, recursively, hidden files and folders left out."""
    found = []
    for parent, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(parent, n).relative_to(root).as_posix() for n in names if _is_image(n)]
    return found


def scan(cfg: DataConfig) -> Listing:
    """List the folder's images (the first `data.limit` if set); a folder unfit to train on is a UserError."""
    root = Path(cfg.root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"data.root {root} {what}; point it at a folder of images ({', '.join(SUFFIXES)})")
    try:
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    except OSError as e:
        raise UserError(f"cannot read data.root {root} ({e.strerror})") from None
    if not entries:
        raise UserError(f"data.root {root} is empty; put images ({', '.join(SUFFIXES)}) in it or in class subfolders")
    classes: tuple[str, ...] = ()
    if any(e.is_file() and _is_image(e.name) for e in entries):
        files = _images_under(root, root)
    else:
        classes = tuple(sorted(e.name for e in entries if e.is_dir()))
        files = []
        for name in classes:
            found = _images_under(root / name, root)
            if not found:
                raise UserError(
                    f"class folder {root / name} holds no images; add some or remove it "
                    "(labels come from the first-level subfolders)"
                )
            files += found
    if not files:
        raise UserError(f"no images ({', '.join(SUFFIXES)}) found in {root} or its subfolders")
    files.sort()
    files = files[: cfg.limit] if cfg.limit else files
    stats = [[f, *_size_and_mtime(root / f)] for f in files]
    label_of = {name: i for i, name in enumerate(classes)}
    labels = [label_of[f.split("/", 1)[0]] for f in files] if classes else []
    return Listing(root, files, stats, classes, labels)


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as e:
        raise UserError(f"cannot read image {path} ({e.strerror})") from None
    return stat.st_size, stat.st_mtime_ns


def content_of(path: Path) -> list[list]:
    """(relative path, size, mtime_ns) of a file, or of every file under a folder (hidden ones left out),
    sorted: what identifies its content for a cache key."""
    if path.is_file():
        return [[path.name, *_size_and_mtime(path)]]
    found = []
    for parent, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(parent, n) for n in names if not n.startswith(".")]
    return sorted([p.relative_to(path).as_posix(), *_size_and_mtime(p)] for p in found)
