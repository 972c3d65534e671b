"""Decoded images on disk, one entry per (source content, preprocessing settings).

Decoding and resizing thousands of images takes minutes; reading the array back takes a moment. The key
hashes what identifies the source's content (a folder's relative paths, sizes and mtimes; a Hugging Face
dataset's fingerprint) plus every setting that shapes the array, so a changed source or setting makes a
new entry and an entry is never stale. Entries live under the user cache (`$DCGAN_CACHE`, else
`$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`) as `folders/<key>/` holding

- images.u8: the images as one C-ordered uint8 array (N, C, S, S) without a header, so that every rank
  can write its share of it in place and a run can memory-map it instead of reading it whole;
- labels.npy (labelled sources) and info.json (the shape, classes, skipped files, settings).

An entry is built in `folders/.partial-<key>.<build>/`, one per build (a run's ranks that decode
together), and renamed into place when complete: an entry that exists is whole, and a partial one is never
read. Two runs that start on the same new data at once (a sweep) each build their own and the first to
finish wins; a partial entry whose build no longer runs (killed mid-decode) is removed by the next build
of that key: at once when its process was on this machine, after an hour untouched when it was elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from dcgan.data.placement import amount
from dcgan.errors import UserError
from dcgan.processes import ended, on_this_machine, this_process

FORMAT = "dcgan-image-cache/2"  # /1 kept the images as .npy, written by one process
IMAGES, LABELS, INFO, OWNER = "images.u8", "labels.npy", "info.json", "owner"
ABANDONED_S = 3600  # a partial entry started on another machine and untouched this long has no build any more


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


def partial_path(entry: Path, build: str) -> Path:
    """Where `build` (a token of the ranks decoding together) assembles the entry."""
    return entry.with_name(f".partial-{entry.name}.{hashlib.sha256(build.encode()).hexdigest()[:12]}")


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


def start_partial(entry: Path, shape: tuple[int, ...], build: str, rank: int) -> None:
    """Start `build`'s partial entry: an empty images.u8 of `shape` (sparse until written) and an owner file
    naming the rank that started it and its process; first remove the partial entries of this key that no
    build is writing any more."""
    for other in entry.parent.glob(f".partial-{entry.name}.*"):
        if other != partial_path(entry, build) and _abandoned(other):
            shutil.rmtree(other, ignore_errors=True)
    partial = partial_path(entry, build)
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
        (partial / OWNER).write_text(json.dumps({"build": build, "rank": rank, **this_process()}))
    except OSError as e:
        raise UserError(
            f"cannot write the decoded-image cache in {partial.parent} ({e.strerror or e}); "
            "set DCGAN_CACHE to a writable folder"
        ) from None


def partial_owner(entry: Path, build: str) -> int | None:
    """The rank that started `build`'s partial entry, if this process sees it."""
    try:
        return int(json.loads((partial_path(entry, build) / OWNER).read_text())["rank"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _abandoned(partial: Path) -> bool:
    """Whether no build writes `partial` any more: started by a process of this machine that has ended (or by
    this process, in a build that was interrupted), or, on another machine, untouched for ABANDONED_S."""
    try:
        owner = json.loads((partial / OWNER).read_text())
    except (OSError, ValueError):
        owner = None  # finishing (the owner file goes just before the rename), or damaged: judged by age
    if isinstance(owner, dict) and isinstance(owner.get("pid"), int) and on_this_machine(owner):
        return ended(owner) is not None  # this process's own pid: a build of it that was interrupted
    try:
        touched = max(path.stat().st_mtime for path in (partial, *partial.iterdir()))
    except OSError:
        return False  # renamed into place or removed meanwhile
    return time.time() - touched > ABANDONED_S


def finish_partial(
    entry: Path, build: str, kept: np.ndarray, row_shape: tuple[int, ...], labels: np.ndarray | None, info: dict
) -> None:
    """Close the gaps that skipped images left (rows not in `kept`, sorted), write labels and info.json,
    and rename the partial entry into place. A racing build of the same key (another run, another machine
    on a shared cache) that finished first wins harmlessly: both decoded the same images."""
    partial = partial_path(entry, build)
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
