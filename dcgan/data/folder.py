"""A folder of your own images (`data.name=folder`): found recursively, decoded once, cached as uint8.

Labels follow the ImageFolder convention: when the root holds no images itself, each first-level
subfolder is a class (names sorted). Every image is EXIF-rotated, converted to grey or RGB (transparent
pixels over `data.background`, 16-bit scaled to 8), resized on its short side and centre-cropped to
`data.image_size`, once; the array is cached
(dcgan/data/cache.py) so later runs, and every rank, read it back instead of decoding again.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

from dcgan.config import DataConfig
from dcgan.data import cache
from dcgan.data.placement import amount, check_fits_in_host_memory
from dcgan.errors import UserError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
RESAMPLE = Image.Resampling.BICUBIC
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255)}  # data.background: under transparent pixels
SKIPPED_SHOWN = 3  # unreadable files named in the summary line; all of them are in the cache's info.json


@dataclass
class Listing:
    """The images under a root, sorted by relative path, and their classes (empty when unlabelled)."""

    root: Path
    files: list[str]
    stats: list[list]
    classes: tuple[str, ...]
    labels: list[int]


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
    labels = [classes.index(f.split("/", 1)[0]) for f in files] if classes else []
    return Listing(root, files, stats, classes, labels)


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as e:
        raise UserError(f"cannot read image {path} ({e.strerror})") from None
    return stat.st_size, stat.st_mtime_ns


def settings(cfg: DataConfig) -> dict:
    """Everything besides the files that shapes the cached array (Pillow's version: its decoders may change)."""
    return {
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "skip_bad_images": cfg.skip_bad_images,
        "resample": RESAMPLE.name,
        "jpeg_draft": True,
        "background": cfg.background,
        "pillow": PIL.__version__,
    }


def flatten(image: Image.Image, mode: str, background: str = "white") -> Image.Image:
    """Any Pillow image -> `mode` ("L" or "RGB") as its owner meant it to look:
    - transparency (an alpha channel, or a palette or colour marked transparent) composited over the
      `background` colour, not dropped to whatever colour lies under it; palette images go through RGBA,
      which is also what Pillow's warning about palette transparency asks for;
    - 16-bit grey scaled to 8 bits (Pillow's own conversion clips everything above 255 to white);
    - CMYK by Pillow's conversion, which undoes the inverted CMYK of Adobe's JPEGs (no ICC profile is applied).
    """
    if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        layer = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, BACKGROUNDS[background] + (255,)), layer)
    return image.convert(mode) if image.mode != mode else image


def decode(path: Path, size: int, channels: int, background: str = "white") -> np.ndarray:
    """One image file -> uint8 (channels, size, size): EXIF-rotated, flattened (`flatten`), short side resized,
    centre-cropped."""
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as image:
        # JPEG only: libjpeg decodes at 1/2 to 1/8 scale while the short side stays >= size, several
        # times faster for photos much larger than the target.
        image.draft(mode, (size, size))
        image = flatten(ImageOps.exif_transpose(image), mode, background)
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=RESAMPLE)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode_or_reason(path: Path, size: int, channels: int, background: str) -> np.ndarray | str:
    try:
        return decode(path, size, channels, background)
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow reports truncated and corrupt files as OSError, and some broken PNG chunks as SyntaxError.
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def decode_all(listing: Listing, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray | None, list[list[str]]]:
    """(images (N, C, S, S) uint8, labels or None, [[file, reason], ...] skipped) in listing order."""
    size, channels = cfg.image_size, cfg.channels
    check_fits_in_host_memory(len(listing.files) * channels * size * size, f"the {len(listing.files)} images")
    images = np.empty((len(listing.files), channels, size, size), dtype=np.uint8)
    kept, skipped = [], []
    paths = [listing.root / f for f in listing.files]
    # Pillow releases the GIL while it decodes and resizes, so threads share the work.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        shape = [size] * len(paths), [channels] * len(paths), [cfg.background] * len(paths)
        for i, result in enumerate(pool.map(_decode_or_reason, paths, *shape)):
            if isinstance(result, str):
                if not cfg.skip_bad_images:
                    raise UserError(
                        f"cannot read image {paths[i]} ({result}); remove or replace it, "
                        "or set data.skip_bad_images=true to skip unreadable files"
                    )
                skipped.append([listing.files[i], result])
                continue
            images[len(kept)] = result
            kept.append(i)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, not after decoding the rest
    if not kept:
        raise UserError(f"none of the {len(paths)} images in {listing.root} could be read (first: {skipped[0][0]})")
    labels = np.asarray(listing.labels, dtype=np.int64)[kept] if listing.classes else None
    return images[: len(kept)], labels, skipped


def _entry(cfg: DataConfig) -> tuple[Listing, str, Path]:
    listing = scan(cfg)
    key = cache.entry_key(listing.stats, settings(cfg))
    return listing, key, cache.entry_path(key)


def load_key(cfg: DataConfig) -> str:
    """The cache key of the folder as it is now: what caches computed from its images are keyed by."""
    return _entry(cfg)[1]


def prepare(cfg: DataConfig) -> str:
    """Main process, before training: decode and cache the folder unless the cache has it; a summary line."""
    listing, _, path = _entry(cfg)
    info = cache.read_info(path)
    if info is None:
        print(f"data: decoding {len(listing.files):,} images under {listing.root} (once; cached)", flush=True)
        info = _build(listing, cfg, path)
        how = f"decoded in {info['seconds']:.0f} s, cached in {path}"
    else:
        how = f"from the cache {path}"
    nbytes = info["images"] * cfg.channels * cfg.image_size**2
    line = (
        f"data: {listing.root}: {info['images']:,} images, {len(info['classes'])} classes, "
        f"{cfg.channels}x{cfg.image_size}x{cfg.image_size} uint8, {amount(nbytes)} ({how})"
    )
    if info["skipped"]:
        shown = ", ".join(f"{f} ({why})" for f, why in info["skipped"][:SKIPPED_SHOWN])
        more = len(info["skipped"]) - SKIPPED_SHOWN
        line += f"; skipped {len(info['skipped'])} unreadable: {shown}" + (f" and {more} more" if more > 0 else "")
    return line


def load(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """(images, labels or None, classes) from the cache, decoding first if it has no entry (a rank on a
    node whose cache the main process did not fill)."""
    listing, _, path = _entry(cfg)
    info = cache.read_info(path) or _build(listing, cfg, path)
    images, labels = cache.read_arrays(path, bool(info["classes"]))
    return images, labels, tuple(info["classes"])


def _build(listing: Listing, cfg: DataConfig, path: Path) -> dict:
    started = time.perf_counter()
    images, labels, skipped = decode_all(listing, cfg)
    info = {
        "format": cache.FORMAT,
        "root": str(listing.root),
        "images": len(images),
        "classes": list(listing.classes),
        "skipped": skipped,
        "settings": settings(cfg),
        "seconds": round(time.perf_counter() - started, 1),
    }
    cache.write_entry(path, images, labels, info)
    return info
