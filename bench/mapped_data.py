"""Training from the memory-mapped cache against from host memory, on the same data (issue 27).

    python bench/mapped_data.py --root /tmp/decode-bench/jpegs --workdir /tmp/mapped-bench --json out.json

The folder (bench/decode_speed.py makes one) is decoded once into a cache under --workdir; the page cache is
then warmed by reading the file. Two measurements, each arm twice in alternation (memory, map, memory, map):

- gather: the batches alone, as the trainer takes them (ImageStore.batch of a seeded shard, to [-1, 1]);
- train: `train.py` at 64 px (`configs/folder_rgb64.yaml`, model.width 16 unless --width), with
  `data.host_budget_gb` unset (in memory) or 0 (mapped): its logged images/s after the first window, and
  the peak resident memory of the process, sampled every 50 ms from /proc/PID/status: RssAnon (its own
  memory) and RssFile (file pages it has mapped, the cache file among them: shared with every process of
  the machine and dropped by the kernel under pressure).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan import hardware  # noqa: E402
from dcgan.config import DataConfig  # noqa: E402
from dcgan.data import ImageStore, ShardedBatches, ensure_dataset, load_dataset, to_model_range  # noqa: E402


def gather_rate(cfg: DataConfig, batches: int, batch: int) -> float:
    data = load_dataset(cfg)
    store = ImageStore(data.images, torch.device("cpu"), 0.0, main=False)
    shard = ShardedBatches(len(store), batch, 1, 0, seed=0)
    rows = [r for epoch in range(batches // shard.steps_per_epoch + 1) for r in shard.indices(epoch)][:batches]
    started = time.perf_counter()
    for r in rows:
        to_model_range(store.batch(r), "signed")
    return batches * batch / (time.perf_counter() - started)


def train(root: Path, out: Path, steps: int, width: int, mapped: bool) -> dict:
    command = [
        sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "folder_rgb64.yaml"),
        f"data.root={root}", f"output_dir={out}", f"train.max_steps={steps}", "log.every_steps=10",
        "log.tracker=none", "log.sample_every=100000", "checkpoint.every_steps=100000", "train.cpu=true",
        "resume=never", "train.mixed_precision=no", f"model.width={width}",
    ] + (["data.host_budget_gb=0"] if mapped else [])  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    lines = []
    with open(f"/proc/{proc.pid}/status") as status:
        while proc.poll() is None:
            status.seek(0)
            for line in status:
                key = line.split(":")[0]
                if key in peak:
                    peak[key] = max(peak[key], int(line.split()[1]) * 1024)
            time.sleep(0.05)
    lines = proc.stdout.read().splitlines()
    if proc.returncode != 0:
        raise SystemExit("\n".join(lines[-20:]))
    rates = [float(m.group(1)) for line in lines if (m := re.search(r"images_per_s ([0-9.]+)", line))]
    return {
        "mapped_line": next((line for line in lines if "memory-mapped" in line), ""),
        "images_per_s": round(statistics.mean(rates[1:]), 1),  # the first window holds the warm-up
        **{f"peak_{k}_mb": round(v / 2**20, 1) for k, v in peak.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a folder of images (bench/decode_speed.py)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60, help="training steps per arm (batch 64, 64 px)")
    parser.add_argument("--width", type=int, default=16, help="model.width: small, so the data is a larger share")
    parser.add_argument("--batches", type=int, default=3000, help="gathered batches per arm")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["DCGAN_CACHE"] = str(args.workdir / "cache")
    cfg = DataConfig(name="folder", root=str(args.root), image_size=64, channels=3)
    ensure_dataset(cfg)
    mapped_cfg = DataConfig(**{**vars(cfg), "host_budget_gb": 0.0})
    file = load_dataset(mapped_cfg).mapped.rsplit(" ", 1)[-1]
    with open(file, "rb") as f:  # warm the page cache
        while f.read(2**24):
            pass
    results = {"machine": hardware.describe(), "cache_file_mb": round(os.path.getsize(file) / 2**20, 1), "rows": []}
    for arm in ("memory", "mapped", "memory", "mapped"):
        rate = gather_rate(mapped_cfg if arm == "mapped" else cfg, args.batches, 64)
        row = {"what": "gather", "arm": arm, "images_per_s": round(rate, 1)}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    for i, arm in enumerate(("memory", "mapped", "memory", "mapped")):
        measured = train(args.root, args.workdir / f"run-{i}-{arm}", args.steps, args.width, arm == "mapped")
        row = {"what": "train", "arm": arm, **measured}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
