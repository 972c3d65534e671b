"""CPU scaling: the real `train.py` with 1 process x 1 thread, 1 process x N threads, and N processes x 1 thread.

    python bench/scaling.py --data-root DATA [--steps 300] [--batch 64] [--json OUT]

`--batch` is the global batch: N processes get batch/N each, so every layout does the same work per
step. Images/s is the median of the run's logged windows after the first (which holds start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dcgan import hardware

REPO = Path(__file__).resolve().parents[1]


def command(procs: int, batch: int, steps: int, run_dir: str, data_root: str) -> list[str]:
    overrides = [
        f"output_dir={run_dir}", f"data.root={data_root}", f"train.batch_size={batch // procs}",
        f"train.max_steps={steps}", "train.cpu=true", "log.every_steps=25", "log.sample_every=0",
        "checkpoint.every_steps=0", "resume=never", "log.tracker=none",
    ]  # fmt: skip
    script = [str(REPO / "train.py"), *overrides]
    if procs == 1:
        return [sys.executable, *script]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO / "launch" / "cpu_multiprocess.yaml"), "--num_processes", str(procs), *script,
    ]  # fmt: skip


def measure(procs: int, threads: int, args: argparse.Namespace) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        proc = subprocess.run(
            command(procs, args.batch, args.steps, run_dir, args.data_root),
            env=env, capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            return {"processes": procs, "threads": threads, "error": proc.stderr.strip().splitlines()[-1:]}
        rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows[1:]]
    return {
        "processes": procs,
        "threads_per_process": threads,
        "global_batch": args.batch,
        "images_per_s": round(statistics.median(rates), 1),
        "windows": [round(r, 1) for r in rates],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64, help="global batch, split over the processes")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    layouts = [(1, 1), (1, args.cores), (args.cores, 1)]
    machine = {k: v for k, v in hardware.describe().items() if k != "torch_threads"}
    result = {"cpu_cores": args.cores, "hardware": machine, "runs": [measure(p, t, args) for p, t in layouts]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
