"""Images decoded per second into the cache: 1, 2, ... worker processes against threads (issue 27).

    python bench/decode_speed.py --images 20000 --workdir /tmp/decode-bench --json out.json

Makes a folder of synthetic 256x256 JPEGs once (gradients, discs and stripes under sensor-like grain at quality
90: photo-sized files), then decodes it to 64x64 RGB the way the first run over a folder does
(dcgan/data/decoding.py `decode_rows`: EXIF, JPEG draft, resize, crop, written into the memory-mapped file)
with each worker count, as processes and as threads. Every arm decodes the same files into a fresh file; the
page cache is warm for all of them (the JPEGs were just written, or read by the first arm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcgan import hardware  # noqa: E402
from dcgan.config import DataConfig  # noqa: E402
from dcgan.data import decoding, folder  # noqa: E402


def make_jpegs(root: Path, count: int, size: int = 256) -> None:
    """`count` synthetic photos (skipped when the folder already holds them)."""
    root.mkdir(parents=True, exist_ok=True)
    if len(list(root.glob("*.jpg"))) >= count:
        return
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    for i in range(count):
        colours = rng.integers(0, 256, (2, 3))
        t = (ramp[:, None] * rng.uniform(0.2, 1) + ramp[None, :] * rng.uniform(0, 0.8))[..., None] / 1.8
        pixels = (colours[0] * (1 - t) + colours[1] * t).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(10, 60))]
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 256, 3).tolist()))
        for row in range(int(rng.integers(2, 6))):
            y = int(rng.integers(0, size - 8))
            draw.rectangle((8, y, size - 8, y + 3 + row % 3), fill=tuple(rng.integers(0, 256, 3).tolist()))
        grain = rng.normal(0, 10, (size, size, 3))  # sensor noise: photo-like file sizes (~25 kB)
        image = Image.fromarray((np.asarray(image) + grain).clip(0, 255).astype(np.uint8))
        image.save(root / f"{i:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, required=True, help="where the JPEGs and decoded files go")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    jpegs = args.workdir / "jpegs"
    started = time.perf_counter()
    make_jpegs(jpegs, args.images)
    made = time.perf_counter() - started
    listing = folder.scan(DataConfig(name="folder", root=str(jpegs), limit=args.images))
    megabytes = sum(size for _, size, _ in listing.stats) / 2**20
    shape = (len(listing), 3, args.size, args.size)
    results = {
        "machine": hardware.describe(),
        "cpus": decoding.workers_for(1),
        "images": len(listing),
        "jpeg_megabytes": round(megabytes, 1),
        "made_in_s": round(made, 1),
        "rows": [],
    }
    print(f"{len(listing)} JPEGs, {megabytes:.0f} MB, in {jpegs}", flush=True)
    target = args.workdir / "images.u8"
    for kind in ("processes", "threads"):
        for workers in args.workers:
            if kind == "processes" and workers == 1:
                continue  # one worker decodes in this process: the row "threads, 1"
            target.unlink(missing_ok=True)
            with open(target, "wb") as f:
                f.truncate(int(np.prod(shape)))
            original = decoding.PROCESSES_FROM
            decoding.PROCESSES_FROM = 1 if kind == "processes" else len(listing) + 1
            try:
                started = time.perf_counter()
                failed = decoding.decode_rows(listing, range(len(listing)), target, shape, "white", False, workers)
                seconds = time.perf_counter() - started
            finally:
                decoding.PROCESSES_FROM = original
            assert not failed
            row = {
                "kind": kind,
                "workers": workers,
                "seconds": round(seconds, 2),
                "images_per_s": round(len(listing) / seconds, 1),
            }
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    target.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
