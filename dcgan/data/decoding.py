"""Images into uint8 arrays: one image the way its owner meant it to look (`decode`), and a source's rows
decoded in parallel straight into a cache file (`decode_rows`).

A source is anything with numbered images (`Source`): a folder's files, a Hugging Face dataset's rows.
Decoding runs in worker processes forked from this one (Pillow's decoders and resizers hold the GIL for
part of their work, so threads alone stop scaling; bench/decode_speed.py), each writing the rows it
decodes into the memory-mapped file: nothing passes between the processes but row numbers and the
reasons of the rows that failed.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dcgan.errors import UserError

RESAMPLE = Image.Resampling.BICUBIC
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255)}  # data.background: under transparent pixels
CHUNK = 64  # rows per task: large enough to hide the pool's overhead, small enough to share the tail
PROCESSES_FROM = 512  # fewer rows decode in this process: forking workers would cost more than it saves


class Source(Protocol):
    """Numbered images: what the cache is built from."""

    def __len__(self) -> int: ...

    def open(self, i: int) -> Image.Image:
        """Image i, opened (a context manager that closes its file)."""

    def where(self, i: int) -> str:
        """Image i for an error line: a file's path, a dataset's row and column."""

    def name(self, i: int) -> str:
        """Image i, short, for the summary line: a file's path under the root, a dataset's row."""


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


def decode(image: Image.Image, size: int, channels: int, background: str = "white") -> np.ndarray:
    """An opened image -> uint8 (channels, size, size): EXIF-rotated, flattened (`flatten`), short side
    resized, centre-cropped."""
    mode = "L" if channels == 1 else "RGB"
    # JPEG only: libjpeg decodes at 1/2 to 1/8 scale while the short side stays >= size, several
    # times faster for photos much larger than the target.
    image.draft(mode, (size, size))
    image = flatten(ImageOps.exif_transpose(image), mode, background)
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=RESAMPLE)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def decode_or_reason(source: Source, i: int, size: int, channels: int, background: str) -> np.ndarray | str:
    """Image i decoded, or why it cannot be."""
    try:
        with source.open(i) as image:
            return decode(image, size, channels, background)
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow reports truncated and corrupt files as OSError, and some broken PNG chunks as SyntaxError.
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# -- many rows into one file -----------------------------------------------------------------------------------------

_JOB: tuple | None = None  # (source, target file, shape, background): set before the workers fork, read by them


def _decode_chunk(rows: range) -> list[tuple[int, str]]:
    source, target, shape, background = _JOB
    out = np.memmap(target, dtype=np.uint8, mode="r+", shape=shape)
    failed = []
    for i in rows:
        result = decode_or_reason(source, i, shape[2], shape[1], background)
        if isinstance(result, str):
            failed.append((i, result))
        else:
            out[i] = result
    del out  # no msync: the pages are in the page cache, which every process reads; finish_partial fsyncs once
    return failed


def workers_for(sharing: int = 1) -> int:
    """Decoding processes for one of `sharing` processes of a machine that decode at the same time."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // sharing)


def decode_rows(
    source: Source, rows: range, target: Path, shape: tuple[int, ...], background: str, skip_bad: bool, workers: int
) -> list[tuple[int, str]]:
    """Decode `rows` of `source` into rows of the uint8 file `target` (of `shape`), with `workers` processes;
    [(row, reason), ...] of the images that could not be read, in row order. An unreadable image is a
    one-line UserError naming it unless `skip_bad`."""
    global _JOB
    _JOB = (source, target, shape, background)
    chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
    pool = _pool(workers, len(rows))
    failed: list[tuple[int, str]] = []
    try:
        tasks = [pool.submit(_decode_chunk, chunk) for chunk in chunks]
        for task in as_completed(tasks):
            failed += task.result()
            if failed and not skip_bad:
                i, reason = min(failed)
                raise UserError(
                    f"cannot read image {source.where(i)} ({reason}); remove or replace it, "
                    "or set data.skip_bad_images=true to skip unreadable files"
                )
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, not after decoding the rest
        _JOB = None
    return sorted(failed)


def parallelism(workers: int, rows: int) -> tuple[str, int]:
    """("processes" or "threads", how many) that `decode_rows` uses for `rows` rows with `workers`."""
    if workers > 1 and rows >= PROCESSES_FROM and "fork" in multiprocessing.get_all_start_methods():
        return "processes", workers
    return "threads", max(1, min(workers, 8))


def _pool(workers: int, rows: int) -> Executor:
    kind, count = parallelism(workers, rows)
    if kind == "processes":
        # fork: the workers inherit the source (an open dataset, a file list) instead of pickling it, and
        # start in milliseconds; they touch no lock, thread or device of this process, only Pillow and the file.
        return ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(count)
