"""Decoded images on disk, one entry per (source content, preprocessing settings).

Decoding and resizing thousands of images takes minutes; reading the array back takes a moment. The key
hashes what identifies the source's content (a folder's relative paths, sizes and mtimes; a Hugging Face
dataset's fingerprint) plus every setting that shapes the array, so a changed source or setting makes a
new entry and an entry is never stale. Entries live under the user cache (`$DCGAN_CACHE`, else
`$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`) as `folders/<key>/` holding

- images.u8: the images as one C-ordered uint8 array (N, C, S, S) without a header, so that every rank
  can write its share of it in place and a run can memory-map it instead of reading it whole;
- labels.npy (labelled sources) and info.json (the shape, classes, skipped files, settings).

An entry is built in `folders/.partial-<key>/` and renamed into place when complete: an entry that exists
is whole, and a partial one left by a crash is never read (the next run starts it again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dcgan.data.placement import amount
from dcgan.errors import UserError

FORMAT = "dcgan-image-cache/2"  # /1 kept the images as .npy, written by one process
IMAGES, LABELS, INFO, OWNER = "images.u8", "labels.npy", "info.json", "owner"


def cache_dir() -> Path:
    if os.environ.get("DCGAN_CACHE"):
        return Path(os.environ["DCGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan"


def entry_key(content: Any, settings: dict[str, Any]) -> str:
    """sha256 of what identifies the source's content and the preprocessing settings."""
    text = json.dumps({"format": FORMAT, "files": content, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(key: str) -> Path:
    return cache_dir() / "folders" / key[:32]


def partial_path(entry: Path) -> Path:
    return entry.with_name(f".partial-{entry.name}")


def read_info(path: Path) -> dict[str, Any] | None:
    """The info.json of a complete entry; None if there is none (or it cannot be read)."""
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == FORMAT else None


def open_images(path: Path, info: dict[str, Any], mapped: bool) -> np.ndarray:
    """The entry's images: memory-mapped copy-on-write (`mapped`: pages are read on use, shared by every
    process of the machine through the page cache, and a write never reaches the file), else read whole."""
    shape = tuple(info["shape"])
    try:
        if mapped:
            return np.memmap(path / IMAGES, dtype=np.uint8, mode="c", shape=shape)
        images = np.fromfile(path / IMAGES, dtype=np.uint8)
        return images.reshape(shape)
    except (OSError, ValueError) as e:
        raise UserError(f"the decoded-image cache {path} is damaged ({e}); delete that folder and run again") from None


def read_labels(path: Path) -> np.ndarray:
    try:
        return np.load(path / LABELS)
    except (OSError, ValueError) as e:
        raise UserError(f"the decoded-image cache {path} is damaged ({e}); delete that folder and run again") from None


# -- building an entry ---------------------------------------------------------------------------------------------


def start_partial(entry: Path, shape: tuple[int, ...], owner: str) -> None:
    """Replace any partial entry left by an earlier run with an empty one: an images.u8 of `shape` (sparse
    until written) and the `owner` token that tells the ranks which build they take part in."""
    partial = partial_path(entry)
    nbytes = int(np.prod(shape))
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        free = shutil.disk_usage(partial).free
        if nbytes > free:
            shutil.rmtree(partial, ignore_errors=True)
            raise UserError(
                f"the decoded images need {amount(nbytes)} in {partial.parent}, which has {amount(free)} free; "
                "set DCGAN_CACHE to a folder with room, or use part of the images with data.limit"
            )
        with open(partial / IMAGES, "wb") as f:
            f.truncate(nbytes)
        (partial / OWNER).write_text(owner)
    except OSError as e:
        raise UserError(
            f"cannot write the decoded-image cache in {partial.parent} ({e.strerror or e}); "
            "set DCGAN_CACHE to a writable folder"
        ) from None


def partial_owner(entry: Path) -> str | None:
    """The owner token of the partial entry under way, if there is one."""
    try:
        return (partial_path(entry) / OWNER).read_text()
    except OSError:
        return None


def finish_partial(entry: Path, kept: np.ndarray, row_shape: tuple[int, ...], labels: np.ndarray | None, info: dict):
    """Close the gaps that skipped images left (rows not in `kept`, sorted), write labels and info.json,
    and rename the partial entry into place. A racing build of the same key (another machine on a shared
    cache) that finished first wins harmlessly."""
    partial = partial_path(entry)
    row = int(np.prod(row_shape))
    with open(partial / IMAGES, "r+b") as f:
        if len(kept) and not np.array_equal(kept, np.arange(len(kept))):
            images = np.memmap(f, dtype=np.uint8, mode="r+", shape=(int(kept[-1]) + 1, row))
            for start in range(0, len(kept), 1024):  # moves rows towards the front only: in order, never overwritten
                rows = kept[start : start + 1024]
                images[start : start + len(rows)] = images[rows]
            del images
        f.truncate(len(kept) * row)
        os.fsync(f.fileno())  # the images are on disk before info.json says the entry is complete
    if labels is not None:
        np.save(partial / LABELS, labels)
    (partial / INFO).write_text(json.dumps({"format": FORMAT, "shape": [len(kept), *row_shape], **info}, indent=1))
    (partial / OWNER).unlink()
    try:
        os.replace(partial, entry)
    except OSError:
        if read_info(entry) is None:
            raise
        shutil.rmtree(partial, ignore_errors=True)
