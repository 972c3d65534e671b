"""Stress the end of multi-process runs: many short runs while every core is kept busy, and how long each
launcher outlives the training processes it started.

    python bench/stress_exit.py --data-root DATA [--case two-launchers|one-launcher|late-collective] [--runs 30]
        [--json OUT]

- `two-launchers`: two "machines" on this host, each `accelerate launch --config_file launch/multi_node.yaml
  --machine_rank R` with one training process, as launch/README.md shows;
- `one-launcher`: one `accelerate launch --config_file launch/cpu_multiprocess.yaml` with 2 processes;
- `late-collective`: the abort itself, provoked (bench/late_collective.py), `--runs` pairs of ranks ending with a
  plain interpreter exit and as many ending as a dcgan rank does, alternating; counts the ranks that aborted.

Each run trains `configs/smoke.yaml` for 3 steps. Every core runs a busy loop meanwhile (a launcher that
waits for a peer shows up under load; see issue 23). Per run: its wall time, each launcher's exit code, and
each launcher's lag, the seconds between the end of the last training process and the launcher's own end.
A run is *late* when a launcher lagged more than 10 s, *failed* when a launcher exited non-zero, *hung* when
it was still running after `--timeout` (its processes are then killed). The summary names the CPU.
Not a test: minutes of wall time, never part of the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from dcgan import hardware

REPO = Path(__file__).resolve().parents[1]
LATE_S = 10.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launchers(case: str, run_dir: Path, data_root: str) -> list[list[str]]:
    """The launcher command lines of one run."""
    train = [str(REPO / "train.py"), "--config", str(REPO / "configs" / "smoke.yaml"), f"output_dir={run_dir}",
             f"data.root={data_root}", "train.max_steps=3", "log.tracker=none"]  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    port = str(_port())
    if case == "one-launcher":
        config = str(REPO / "launch" / "cpu_multiprocess.yaml")
        return [[*launch, "--config_file", config, "--num_processes", "2", "--main_process_port", port, *train]]
    config = str(REPO / "launch" / "multi_node.yaml")
    return [
        [*launch, "--config_file", config, "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
         "--main_process_ip", "127.0.0.1", "--main_process_port", port, *train]
        for rank in (0, 1)
    ]  # fmt: skip


def one_run(case: str, data_root: str, folder: Path, timeout: float) -> dict:
    """Start the run's launchers, watch their process trees every 50 ms, and time their ends."""
    logs = [open(folder / f"launcher{i}.log", "w") for i in range(2)]  # noqa: SIM115 - closed below
    started = time.monotonic()
    procs = [
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        for cmd, log in zip(launchers(case, folder / "run", data_root), logs, strict=False)
    ]
    workers: dict[int, psutil.Process] = {}
    last_worker_end, ends = None, [None] * len(procs)
    while any(end is None for end in ends) and time.monotonic() - started < timeout:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                workers.update({p.pid: p for p in psutil.Process(proc.pid).children() if _is_training(p)})
        if any(map(_running, workers.values())):
            last_worker_end = None
        elif workers and last_worker_end is None:
            last_worker_end = time.monotonic()
        for i, proc in enumerate(procs):
            if ends[i] is None and proc.poll() is not None:
                ends[i] = time.monotonic()
        time.sleep(0.05)
    hung = any(end is None for end in ends)
    for proc in procs:
        if proc.poll() is None:
            for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                p.kill()
            proc.wait()
    for log in logs:
        log.close()
    lags = [round(end - last_worker_end, 2) if end and last_worker_end else None for end in ends]
    return {
        "wall_s": round(max(end or time.monotonic() for end in ends) - started, 2),
        "exit_codes": [proc.returncode for proc in procs],
        "launcher_lag_s": lags,
        "hung": hung,
        "late": hung or any(lag is not None and lag > LATE_S for lag in lags),
        "failed": any(proc.returncode != 0 for proc in procs),
    }


def _is_training(process: psutil.Process) -> bool:
    """A training process, not a helper that the launcher runs on the way (a GPU query, say)."""
    try:
        return any(arg.endswith("train.py") for arg in process.cmdline())
    except psutil.Error:
        return False


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def late_collective(mode: str, folder: Path) -> list[int]:
    """Exit codes of the two ranks, rank 1 leaving with an all-reduce still running (bench/late_collective.py)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_port()),
           "WORLD_SIZE": "2"}  # fmt: skip
    script, flag = str(REPO / "bench" / "late_collective.py"), str(folder / "flag")
    ranks = [subprocess.Popen([sys.executable, script, mode, flag], env={**env, "RANK": str(r)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for r in (0, 1)]  # fmt: skip
    return [rank.wait(timeout=120) for rank in ranks]


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def summary(case: str, runs: list[dict]) -> dict:
    walls = sorted(r["wall_s"] for r in runs)
    lags = sorted(lag for r in runs for lag in r["launcher_lag_s"] if lag is not None)
    quantile = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None  # noqa: E731
    return {
        "case": case,
        "runs": len(runs),
        "late": sum(r["late"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "hung": sum(r["hung"] for r in runs),
        "wall_s": {"min": walls[0], "median": statistics.median(walls), "p90": quantile(walls, 0.9), "max": walls[-1]},
        "launcher_lag_s": {"median": statistics.median(lags) if lags else None, "max": lags[-1] if lags else None},
    }


def launch_case(args: argparse.Namespace, tmp: Path) -> dict:
    """`--runs` runs of a launch case; the result for --json."""
    runs = []
    for i in range(args.runs):
        folder = tmp / f"run{i:03d}"
        folder.mkdir()
        r = one_run(args.case, args.data_root, folder, args.timeout)
        runs.append(r)
        flags = f"{'  LATE' if r['late'] else ''}{'  FAILED' if r['failed'] else ''}"
        lags = r["launcher_lag_s"]
        print(f"run {i + 1:3d}: {r['wall_s']:6.1f} s, exit {r['exit_codes']}, launcher lag {lags}{flags}", flush=True)
        if r["late"] or r["failed"]:
            kept = Path(tempfile.mkdtemp(prefix=f"dcgan-stress-run{i:03d}-"))
            for log in folder.glob("launcher*.log"):
                (kept / log.name).write_bytes(log.read_bytes())
            print(f"         its launchers' output: {kept}")
    return {"summary": summary(args.case, runs), "runs": runs}


def late_collective_case(args: argparse.Namespace, tmp: Path) -> dict:
    """`--runs` pairs of ranks that leave with a collective running, each way of ending; the result for --json."""
    codes: dict[str, list[list[int]]] = {"exit": [], "end": []}
    for i in range(args.runs):
        for mode in codes:
            folder = tmp / f"{mode}{i:03d}"
            folder.mkdir()
            codes[mode].append(late_collective(mode, folder))
        line = f"plain exit {codes['exit'][-1]}, end_process {codes['end'][-1]}"
        print(f"run {i + 1:3d}: exit codes of ranks 0 and 1: {line}", flush=True)
    counts = {
        mode: {
            "runs": len(c),
            "rank1_aborted": sum(pair[1] != 0 for pair in c),
            "any_aborted": sum(any(pair) for pair in c),
        }
        for mode, c in codes.items()
    }
    return {"summary": {"case": args.case, **counts}, "codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="a folder holding MNIST/raw/")
    parser.add_argument("--case", choices=("two-launchers", "one-launcher", "late-collective"), default="two-launchers")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="busy loops beside the runs (default: cores)")
    parser.add_argument("--timeout", type=float, default=400, help="a run still going after this is hung")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args()
    machine = hardware.describe(None)
    print(f"{args.case}: {args.runs} runs, {args.busy} busy loop(s) on {machine['cpu']} ({os.cpu_count()} cores)")
    busy = busy_loops(args.busy)
    try:
        with tempfile.TemporaryDirectory(prefix="dcgan-stress-") as tmp:
            case = late_collective_case if args.case == "late-collective" else launch_case
            result = {**case(args, Path(tmp)), "machine": machine}
    finally:
        for proc in busy:
            proc.kill()
    print(json.dumps(result["summary"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
