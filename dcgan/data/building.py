"""A source's cache entry, built once by every rank that can write it, then read by every rank.

`ensure_entry` is a collective of all ranks (or a plain call in a single process). Rank 0 starts a partial
entry in its cache (dcgan/data/cache.py) with an owner token of this run; a machine whose ranks do not see
that entry (a cache on local disk) gets its own, started by its first rank. The ranks that see the same
partial entry split the rows into contiguous blocks and each decodes its block, with one process per
free core (dcgan/data/decoding.py), straight into the one images file; the team's first rank then closes
the gaps of skipped images and renames the entry into place. Nobody waits while one process decodes, and a
crash leaves only a partial entry, which the next run starts again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import PIL
from accelerate import Accelerator

from dcgan.config import DataConfig
from dcgan.data import cache
from dcgan.data.decoding import RESAMPLE, Source, decode_rows, parallelism, workers_for
from dcgan.data.placement import amount
from dcgan.distributed import agree, gather_per_rank
from dcgan.errors import UserError

T = TypeVar("T")
SKIPPED_SHOWN = 3  # unreadable images named in the summary line; all of them are in the entry's info.json


@dataclass
class Cached:
    """A source with what its cache entry is keyed by."""

    source: Source
    name: str  # the source for people: a folder's path, a dataset's name
    content: Any  # what identifies its images (hashed into the key)
    classes: tuple[str, ...]
    labels: list[int]  # the class of each image, in source order ([] when unlabelled)
    extra: dict[str, Any]  # source-specific settings that shape the array (hashed into the key)

    def settings(self, cfg: DataConfig) -> dict[str, Any]:
        """Everything besides the content that shapes the array (Pillow's version: its decoders may change)."""
        return {
            "image_size": cfg.image_size,
            "channels": cfg.channels,
            "skip_bad_images": cfg.skip_bad_images,
            "resample": RESAMPLE.name,
            "jpeg_draft": True,
            "background": cfg.background,
            "pillow": PIL.__version__,
            **self.extra,
        }

    def entry(self, cfg: DataConfig) -> Path:
        return cache.entry_path(self.key(cfg))

    def key(self, cfg: DataConfig) -> str:
        return cache.entry_key(self.content, self.settings(cfg))


class Ranks:
    """This process among the ranks that build an entry together (`acc` None: one process alone)."""

    def __init__(self, acc: Accelerator | None):
        self.acc = acc if acc is not None and acc.num_processes > 1 else None
        self.rank = self.acc.process_index if self.acc else 0

    def each(self, fn: Callable[[], T]) -> list[T]:
        """fn() of every rank, in rank order; a UserError on any rank is raised on all of them."""
        if self.acc is None:
            return [fn()]
        return gather_per_rank(self.acc, agree(self.acc, fn))

    def mine(self, fn: Callable[[], T]) -> T:
        """fn() of this rank, run on every rank; a UserError on any rank is raised on all of them."""
        return fn() if self.acc is None else agree(self.acc, fn)


def ensure_entry(cached: Cached, cfg: DataConfig, acc: Accelerator | None = None) -> tuple[Path, dict, str]:
    """(entry, its info, how it came: "decoded in 12 s ..." or "from the cache ...") on every rank."""
    ranks = Ranks(acc)
    entry = cached.entry(cfg)
    shape = (len(cached.source), cfg.channels, cfg.image_size, cfg.image_size)
    started = time.perf_counter()
    states = ranks.each(lambda: (cache.read_info(entry) is not None, socket.gethostname(), _now()))
    complete = states[ranks.rank][0]
    if not all(done for done, _, _ in states):
        run = f"{states[0][1]}:{states[0][2]}"  # this build's token, the same on every rank: rank 0's host, pid, time
        host = states[ranks.rank][1]
        first_here = min(r for r, (done, h, _) in enumerate(states) if h == host and not done) if not complete else -1

        def start(first: bool) -> None:
            """Rank 0 starts the entry; then the first rank of each machine that cannot see it starts its own."""
            if (ranks.rank == 0 and first and not complete) or (
                ranks.rank == first_here and not first and cache.partial_owner(entry, run) is None
            ):
                cache.start_partial(entry, shape, run, ranks.rank)

        ranks.each(lambda: start(first=True))
        ranks.each(lambda: start(first=False))
        owners = ranks.each(lambda: None if complete else _owner(entry, run))
        team = [r for r, owner in enumerate(owners) if owner is not None and owner == owners[ranks.rank]]
        if not complete and ranks.rank == team[0]:
            print(_decoding_line(cached, team, states, shape), flush=True)
        ranks.each(lambda: complete or _decode_share(cached, cfg, entry, run, shape, team, ranks.rank, states))
        ranks.each(lambda: complete or ranks.rank != team[0] or _finish(cached, cfg, entry, run, shape, team, started))
    info = ranks.mine(lambda: _complete(entry))
    how = "from the cache" if complete else f"decoded in {info['seconds']:.0f} s, cached"
    return entry, info, f"{how} {entry}"


def _now() -> str:
    return f"{os.getpid()}:{time.time()}"


def _complete(entry: Path) -> dict:
    info = cache.read_info(entry)
    if info is None:
        raise UserError(f"the decoded-image cache {entry} is missing or damaged; delete that folder and run again")
    return info


def _owner(entry: Path, run: str) -> int:
    owner = cache.partial_owner(entry, run)
    if owner is None:
        raise UserError(
            f"cannot see the decoded-image cache {cache.partial_path(entry, run)} that this machine's first process "
            "started; give every process of a machine the same DCGAN_CACHE"
        )
    return owner


def _block(rows: int, team: list[int], rank: int) -> range:
    """This rank's contiguous block of the rows, the blocks of a team as equal as they can be."""
    part, count = team.index(rank), len(team)
    return range(rows * part // count, rows * (part + 1) // count)


def _workers(team: list[int], rank: int, states) -> int:
    """Decoding processes for `rank`: its machine's free cores shared by the team's ranks decoding there at once."""
    return workers_for(sum(1 for r in team if states[r][1] == states[rank][1]))


def _decode_share(
    cached: Cached, cfg: DataConfig, entry: Path, run: str, shape, team: list[int], rank: int, states
) -> None:
    rows, partial = _block(shape[0], team, rank), cache.partial_path(entry, run)
    workers = _workers(team, rank, states)
    failed = decode_rows(
        cached.source, rows, partial / cache.IMAGES, shape, cfg.background, cfg.skip_bad_images, workers
    )
    (partial / f"skipped-{rank}.json").write_text(json.dumps([[cached.source.name(i), i, why] for i, why in failed]))


def _finish(cached: Cached, cfg: DataConfig, entry: Path, run: str, shape, team: list[int], started: float) -> None:
    partial = cache.partial_path(entry, run)
    skipped = []
    for rank in team:
        skipped += json.loads((partial / f"skipped-{rank}.json").read_text())
        (partial / f"skipped-{rank}.json").unlink()
    bad = {i for _, i, _ in skipped}
    kept = np.asarray([i for i in range(shape[0]) if i not in bad], dtype=np.int64)
    if not len(kept):
        raise UserError(f"none of the {shape[0]} images in {cached.name} could be read (first: {skipped[0][0]})")
    labels = np.asarray(cached.labels, dtype=np.int64)[kept] if cached.classes else None
    info = {
        "source": cached.name,
        "key": cached.key(cfg),
        "classes": list(cached.classes),
        "skipped": [[where, why] for where, _, why in sorted(skipped, key=lambda s: s[1])],
        "settings": cached.settings(cfg),
        "seconds": round(time.perf_counter() - started, 1),
    }
    cache.finish_partial(entry, run, kept, shape[1:], labels, info)


def _decoding_line(cached: Cached, team: list[int], states, shape) -> str:
    """What the team's first rank says before it decodes (its own block stands for all)."""
    kind, count = parallelism(_workers(team, team[0], states), len(_block(shape[0], team, team[0])))
    each = f" on each of {len(team)} ranks" if len(team) > 1 else ""
    return (
        f"data: decoding {shape[0]:,} images of {cached.name} into {amount(int(np.prod(shape)))} "
        f"with {count} {kind.rstrip('es') if count == 1 else kind}{each} (once; cached)"
    )


def summary(cached: Cached, cfg: DataConfig, info: dict, how: str) -> str:
    """The start line that says what the data is and where it came from."""
    count = info["shape"][0]
    nbytes = int(np.prod(info["shape"]))
    line = (
        f"data: {cached.name}: {count:,} images, {len(info['classes'])} classes, "
        f"{cfg.channels}x{cfg.image_size}x{cfg.image_size} uint8, {amount(nbytes)} ({how})"
    )
    if info["skipped"]:
        shown = ", ".join(f"{f} ({why})" for f, why in info["skipped"][:SKIPPED_SHOWN])
        more = len(info["skipped"]) - SKIPPED_SHOWN
        line += f"; skipped {len(info['skipped'])} unreadable: {shown}" + (f" and {more} more" if more > 0 else "")
    return line
