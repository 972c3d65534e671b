"""Decoded folder arrays on disk, one entry per (file list, sizes, mtimes, preprocessing settings).

Decoding and resizing thousands of images takes minutes; reading the array back takes a moment. The
key hashes every file's relative path, size and mtime plus every setting that shapes the array, so a
changed folder or setting makes a new entry and an entry is never stale. Entries live under the user
cache (`$DCGAN_CACHE`, else `$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`) as `folders/<key>/`
holding images.npy, labels.npy (labelled folders) and info.json; each is written into a hidden folder
and renamed into place, so an entry that exists is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dcgan.errors import UserError

FORMAT = "dcgan-folder-cache/1"


def cache_dir() -> Path:
    if os.environ.get("DCGAN_CACHE"):
        return Path(os.environ["DCGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan"


def entry_key(files: list[list[Any]], settings: dict[str, Any]) -> str:
    """sha256 of the (relative path, size, mtime_ns) rows and the preprocessing settings."""
    text = json.dumps({"format": FORMAT, "files": files, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(key: str) -> Path:
    return cache_dir() / "folders" / key[:32]


def read_info(path: Path) -> dict[str, Any] | None:
    """The info.json of a complete entry; None if there is none (or it cannot be read)."""
    try:
        info = json.loads((path / "info.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == FORMAT else None


def read_arrays(path: Path, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) of a complete entry."""
    try:
        return np.load(path / "images.npy"), np.load(path / "labels.npy") if labelled else None
    except (OSError, ValueError) as e:
        raise UserError(f"the decoded-image cache {path} is damaged ({e}); delete that folder and run again") from None


def write_entry(path: Path, images: np.ndarray, labels: np.ndarray | None, info: dict[str, Any]) -> None:
    """Write an entry atomically; a racing writer of the same key (another node) wins harmlessly."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / "images.npy", images)
        if labels is not None:
            np.save(tmp / "labels.npy", labels)
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        os.replace(tmp, path)
    except OSError as e:
        if (path / "info.json").is_file():  # someone else wrote the same entry first
            return
        raise UserError(
            f"cannot write the decoded-image cache in {path.parent} ({e.strerror or e}); "
            "set DCGAN_CACHE to a writable folder"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
