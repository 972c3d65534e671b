"""Shared helpers: where the test MNIST lives, running the real entry points as subprocesses, image folders."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WANDB_DATA = REPO / ".pytest_cache" / "wandb"
# Every process a test starts sees this environment, and so does this one before torch is imported: one thread
# (two workers share CI's two cores), W&B offline with its artifact staging under the repo's pytest cache, and
# reference statistics for fid_mnist & co. cached there too instead of the user's home.
os.environ.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_DATA_DIR=str(WANDB_DATA), PYTHONUNBUFFERED="1")
os.environ.setdefault("DCGAN_CACHE", str(REPO / ".pytest_cache" / "dcgan"))
os.environ["HF_DATASETS_CACHE"] = str(REPO / ".pytest_cache" / "hf-datasets")  # parquet files become arrow there
os.environ.pop("ACCELERATE_USE_CPU", None)

import json
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dcgan.config import DataConfig
from dcgan.data import Dataset, ensure_dataset, load_dataset
from dcgan.errors import UserError
from helpers import forked


def _find_data_root() -> Path:
    """DCGAN_TEST_DATA, else the machines' shared copy, else the repo's data/ (where training downloads)."""
    if "DCGAN_TEST_DATA" in os.environ:
        return Path(os.environ["DCGAN_TEST_DATA"])
    for candidate in (REPO.parent / "shared" / "data", REPO / "data"):
        if (candidate / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return candidate
    return REPO / "data"


DATA_ROOT = _find_data_root()
SMOKE = REPO / "configs" / "smoke.yaml"
PROBE = REPO / "tests" / "helpers" / "dist_probe.py"  # a rank that reports on its training (see the file)
# W&B is the default tracker; tests that do not test tracking turn it off (theirs may turn it on again).
NO_TRACKER = "log.tracker=none"


def _env() -> dict[str, str]:
    return dict(os.environ)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(run_dir: Path, *overrides: str) -> list[str]:
    return ["--config", str(SMOKE), f"output_dir={run_dir}", f"data.root={DATA_ROOT}", NO_TRACKER, *overrides]


def train_command(run_dir: Path, *overrides: str, nproc: int = 1) -> list[str]:
    """The command line of a smoke training run: `python train.py ...`, or through `accelerate launch` with
    the project's CPU launch config for `nproc` > 1."""
    args = _train_args(run_dir, *overrides)
    if nproc == 1:
        return [sys.executable, str(REPO / "train.py"), *args]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "launch" / "cpu_multiprocess.yaml"),
        "--num_processes", str(nproc), "--main_process_port", str(free_port()),
        str(REPO / "train.py"), *args,
    ]  # fmt: skip


def run_python(command: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`subprocess.run(command, cwd=REPO, capture_output=True, text=True)` for `python SCRIPT ...` and
    `python -m MODULE ...`, run as a process forked from this worker's pre-imported server (tests/helpers/forked.py);
    for `python -m accelerate.commands.launch` that is the launcher only: the ranks it starts, `python -c`
    and other programs are started for real."""
    if command[0] != sys.executable or command[1:2] == ["-c"]:
        return subprocess.run(command, cwd=REPO, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        code = forked.run(command[1:], str(REPO), env or _env(), out, err, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(command, timeout)
        with open(out) as o, open(err) as e:
            return subprocess.CompletedProcess(command, code, o.read(), e.read())


def run_ranks(
    argv: list[str], nproc: int, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`nproc` real ranks of `python SCRIPT ARGS...` (or `-m MODULE`) in torchrun's environment, forked from
    this worker's server instead of started by `accelerate launch` (tests/helpers/forked.py): they still rendezvous
    and all-reduce over gloo. Tests of the launchers themselves use `train_command(nproc=N)`."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        code = forked.run_ranks(argv, nproc, free_port(), str(REPO), env or _env(), out, err, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(argv, timeout)
        with open(out) as o, open(err) as e:
            return subprocess.CompletedProcess(argv, code, o.read(), e.read())


def run_probe(out: Path, *overrides: str, nproc: int = 2) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`nproc` ranks of PROBE training the smoke config into `out` with `overrides` (each rank counts its
    all-reduces per phase and compares its weights with rank 0's); (the run, each rank's report)."""
    proc = run_ranks([str(PROBE), str(out), str(SMOKE), f"output_dir={out}", *overrides], nproc)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def run_train(run_dir: Path, *overrides: str, nproc: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    """Train through the real entry point (`nproc` ranks: `run_ranks`); `check` fails the test with the run's
    output on a non-zero exit."""
    if nproc == 1:
        proc = run_python(train_command(run_dir, *overrides))
    else:
        proc = run_ranks([str(REPO / "train.py"), *_train_args(run_dir, *overrides)], nproc)
    if check and proc.returncode != 0:
        pytest.fail(f"training exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture
def other_process():
    """A live process of this machine that is not this one (an owner that still runs)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real MNIST, downloaded into the repo's data/ on first use if no copy is found."""
    try:
        ensure_dataset(DataConfig(root=str(DATA_ROOT), download=True))
    except UserError as e:
        pytest.fail(f"{e} (or set DCGAN_TEST_DATA to a folder holding MNIST/raw/)")
    return DATA_ROOT


def write_png(path: Path, pixels) -> None:
    """Write a uint8-valued array, (H, W) grey or (H, W, 3) RGB, as a PNG file (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels).astype(np.uint8)).save(path)


@pytest.fixture(scope="session")
def fashion_pngs(tmp_path_factory, data_root) -> tuple[Path, Dataset]:
    """The first 2,000 Fashion-MNIST training images as grey PNGs in class folders, ROOT/<label>/<index>.png,
    and the dataset they were written from."""
    data = load_dataset(DataConfig(name="fashion_mnist", root=str(data_root), limit=2000))
    root = tmp_path_factory.mktemp("fashion_pngs")
    for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        write_png(root / str(int(label)) / f"{i:05d}.png", image[0].numpy())
    return root, data
