"""Faults a user meets on a cluster, each asserted on behaviour: exit code, message, surviving checkpoint."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    PROBE,
    REPO,
    SMOKE,
    _env,
    assert_same_tensors,
    free_port,
    load_weights,
    read_metrics,
    run_python,
    run_ranks,
    run_train,
    train_command,
)
from dcgan.config import DataConfig
from dcgan.data.idx import load_images
from dcgan.errors import EXIT_NONFINITE, EXIT_PEER_LOST, EXIT_PREEMPTED, UserError
from dcgan.run import checkpoint


def _start(run_dir: Path, *overrides: str, nproc: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        train_command(run_dir, *overrides, nproc=nproc),
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_training(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has logged its first metrics line."""
    deadline = time.monotonic() + timeout
    while not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "metrics.jsonl").read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)


# -- preemption ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_and_exits_with_the_preempted_code_then_resumes_exactly(tmp_path, data_root):
    long = ("train.epochs=50", "log.every_steps=2", "checkpoint.every_steps=0", "fault.check_every=3")
    run_dir = tmp_path / "preempted"
    proc = _start(run_dir, *long)
    _wait_for_training(run_dir, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("dcgan: stopped:")]
    assert "SIGTERM received: checkpoint" in line and "run again with resume=auto" in line
    stopped_at = checkpoint.load_checkpoint(checkpoint.latest_valid(run_dir / "checkpoints"))[2]["progress"]["step"]
    assert stopped_at % 3 == 0 and f"saved at step {stopped_at}" in line  # at the next agreement point
    # Resuming finishes exactly like a run that was never interrupted.
    target = f"train.max_steps={stopped_at + 7}"
    run_train(run_dir, *long, target)
    run_train(tmp_path / "straight", *long, target)
    assert_same_tensors(
        load_weights(run_dir / "generator.safetensors"), load_weights(tmp_path / "straight" / "generator.safetensors")
    )


@pytest.mark.slow
def test_a_second_signal_exits_at_once(tmp_path, data_root):
    proc = _start(tmp_path, "train.epochs=50", "log.every_steps=1", "fault.check_every=1000")
    _wait_for_training(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM


@pytest.mark.slow
def test_sigusr1_to_one_of_two_ranks_stops_both_with_a_checkpoint(tmp_path, data_root):
    proc = _start(tmp_path, "train.epochs=50", "log.every_steps=2", "fault.check_every=4", nproc=2)
    _wait_for_training(tmp_path, proc)
    workers = subprocess.run(["pgrep", "-f", f"output_dir={tmp_path}"], capture_output=True, text=True).stdout.split()
    rank1 = [int(pid) for pid in workers if "RANK=1\0" in Path(f"/proc/{pid}/environ").read_text(errors="replace")]
    assert len(rank1) == 1, workers
    os.kill(rank1[0], signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.count("dcgan: stopped: SIGUSR1 received") == 1, err[-3000:]
    assert f"exitcode  : {EXIT_PREEMPTED}" in err  # both workers exited with the documented code
    newest = checkpoint.latest_valid(tmp_path / "checkpoints")
    step = checkpoint.load_checkpoint(newest)[2]["progress"]["step"]
    assert step % 4 == 0 and step > 0
    assert len(checkpoint.load_checkpoint(newest)[2]["rng"]) == 2  # both ranks' state, saved together


@pytest.mark.slow
def test_a_dead_rank_ends_the_whole_job_quickly_and_is_named(tmp_path, data_root):
    proc = _start(tmp_path, "train.epochs=50", "log.every_steps=2", nproc=2)
    _wait_for_training(tmp_path, proc)
    workers = subprocess.run(["pgrep", "-f", f"output_dir={tmp_path}"], capture_output=True, text=True).stdout.split()
    rank1 = [int(pid) for pid in workers if "RANK=1\0" in Path(f"/proc/{pid}/environ").read_text(errors="replace")]
    killed_at = time.monotonic()
    os.kill(rank1[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert time.monotonic() - killed_at < 60
    assert proc.returncode != 0
    assert "rank      : 1" in err and "Signal 9 (SIGKILL)" in err, err[-3000:]


def test_a_rank_that_fails_in_python_is_named_with_its_reason_by_the_others(tmp_path, data_root):
    env = {**_env(), "PROBE_RANK1_FAILS_AT": "5"}
    argv = [str(PROBE), str(tmp_path), str(SMOKE), f"output_dir={tmp_path / 'run'}", f"data.root={data_root}",
            "train.max_steps=50"]  # fmt: skip
    proc = run_ranks(argv, nproc=2, env=env)
    assert proc.returncode == EXIT_PEER_LOST, proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("dcgan: stopped:")]
    assert line.startswith("dcgan: stopped: lost rank 1, machine 0 (host ")
    assert "failed: RuntimeError: rank 1 fails on purpose at step 5" in line and "resume=auto" in line


@pytest.mark.slow
def test_a_rank_that_leaves_with_a_collective_still_being_freed_exits_cleanly(tmp_path):
    """bench/late_collective.py: rank 1 ends while its gloo worker still holds an all-reduce that rank 0 completes
    during rank 1's exit. Leaving through interpreter shutdown, rank 1 aborted in 11 of 20 tries (SIGABRT,
    bench/README.md); through end_process both ranks exit 0."""
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"}
    for attempt in range(2):
        env["MASTER_PORT"] = str(free_port())
        flag, script = tmp_path / f"flag{attempt}", str(REPO / "bench" / "late_collective.py")
        ranks = [subprocess.Popen([sys.executable, script, "end", str(flag)], env={**env, "RANK": str(r)},
                                  stderr=subprocess.PIPE, text=True) for r in (0, 1)]  # fmt: skip
        errors = [rank.communicate(timeout=120)[1] for rank in ranks]
        assert [rank.returncode for rank in ranks] == [0, 0], errors[1][-2000:]


def test_a_rank_ends_without_interpreter_shutdown_after_its_atexit_handlers(tmp_path):
    """The exit of every rank of a multi-process run (dcgan/distributed.py: end_process): the exit code given,
    atexit handlers run and output flushed, but no interpreter shutdown, where a gloo worker that still frees a
    finished collective would abort the process."""
    script = (
        "import atexit, sys\n"
        "from dcgan.distributed import end_process\n"
        f"atexit.register(lambda: open({str(tmp_path / 'atexit')!r}, 'w').write('ran'))\n"
        "class Finalized:\n"
        f"    def __del__(self): open({str(tmp_path / 'finalized')!r}, 'w').write('ran')\n"
        "kept = Finalized()\n"
        "sys.stdout.write('unflushed')\n"
        "end_process(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7 and proc.stdout == "unflushed", proc.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "finalized").exists()  # interpreter shutdown, which would collect it, never ran


# -- crash safety ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_random_kill_9_then_resume_ends_bit_identical(tmp_path, data_root):
    """kill -9 at random moments (start-up, mid-step, mid-save), resume=auto after each."""
    settings = ("train.max_steps=48", "checkpoint.every_steps=2", "log.every_steps=4")
    run_train(tmp_path / "straight", *settings)
    run_dir = tmp_path / "killed"
    rng = random.Random(1234)
    for _ in range(4):
        proc = _start(run_dir, *settings)
        time.sleep(rng.uniform(3.0, 9.0))
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        newest = checkpoint.latest_valid(run_dir / "checkpoints")
        if newest is not None:  # whatever the moment, the newest complete checkpoint loads
            checkpoint.load_checkpoint(newest)
    proc = run_train(run_dir, *settings)
    assert_same_tensors(
        load_weights(run_dir / "generator.safetensors"), load_weights(tmp_path / "straight" / "generator.safetensors")
    )
    assert [m["step"] for m in read_metrics(run_dir)] == list(range(4, 49, 4))  # no duplicate lines either
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, data_root):
    run_train(tmp_path, "train.max_steps=8", "checkpoint.every_steps=4")
    newest = tmp_path / "checkpoints" / "step_0000008" / "generator.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    proc = run_train(tmp_path, "train.max_steps=10", "checkpoint.every_steps=4")
    assert "skipping checkpoint" in proc.stderr and "step_0000008" in proc.stderr
    assert "at step 4" in proc.stdout


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, data_root):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        # One checkpoint is ~5 MB (weights plus Adam moments): the first fits in 8 MB, the second cannot.
        proc = run_train(disk, "train.max_steps=8", "checkpoint.every_steps=4", "checkpoint.keep_last=5", check=False)
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("dcgan: error: cannot write checkpoint step_0000008")
        assert "No space left on device" in lines[-1] and "step_0000004 is intact" in lines[-1]
        assert checkpoint.latest_valid(disk / "checkpoints").name == "step_0000004"
        assert not list((disk / "checkpoints").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(disk)])


# -- numerics --------------------------------------------------------------------------------------


def test_nonfinite_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, data_root):
    # Pins when the losses blow up.
    recipe = ("train.g_first=false", "train.real_label=1.0", "optim.lr_scaling=none", "train.r1_gamma=0")
    run_train(tmp_path, "train.max_steps=10", "checkpoint.every_steps=10", *recipe)
    # Resume with absurd learning rates: the weights blow up within a few steps.
    proc = run_train(tmp_path, "train.max_steps=60", "optim.lr_d=1e12", "optim.lr_g=1e12", "checkpoint.every_steps=5",
                     "fault.max_nonfinite_steps=5", "fault.check_every=5", *recipe, check=False)  # fmt: skip
    assert proc.returncode == EXIT_NONFINITE, proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("dcgan: stopped:")]
    assert "losses were NaN/inf for" in line and "consecutive steps since step 1" in line
    assert "the last good checkpoint is" in line and "step_0000010" in line
    assert checkpoint.latest_valid(tmp_path / "checkpoints").name == "step_0000010"
    weights = load_weights(tmp_path / "checkpoints" / "step_0000010" / "generator.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_gradient_clipping_runs_inside_each_step(tmp_path, data_root):
    run_train(tmp_path / "clipped", "train.max_steps=8", "optim.clip_d=0.5", "optim.clip_g=0.5")
    run_train(tmp_path / "free", "train.max_steps=8")
    clipped, free = read_metrics(tmp_path / "clipped")[-1], read_metrics(tmp_path / "free")[-1]
    assert clipped["loss_D"] != free["loss_D"]  # clipping changed the trajectory
    assert clipped["grad_norm_D"] > 0.5  # the logged norm is the one before clipping


# -- bad input -------------------------------------------------------------------------------------


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, image_magic: int = 0x803) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    header = np.array([image_magic, n, rows, cols], dtype=">u4").tobytes()
    (folder / "train-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    label_header = np.array([0x801, len(labels)], dtype=">u4").tobytes()
    (folder / "train-labels-idx1-ubyte").write_bytes(label_header + labels.astype(np.uint8).tobytes())
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("none", None),
        ("magic", "is not an IDX image file (magic 0x00000802"),
        ("truncated", "truncated or damaged, download it again"),
        ("size", "holds 14x14 images; MNIST images are 28x28"),
        ("count", "has 9 labels for 10 images"),
        ("empty", "is too short to be an IDX file"),
    ],
)
def test_bad_data_files_fail_in_one_line(tmp_path, damage, message):
    raw = tmp_path / "MNIST" / "raw"
    images, labels = np.random.default_rng(0).integers(0, 256, (10, 28, 28)), np.arange(10)
    if damage == "size":
        images = images[:, :14, :14]
    _write_idx(raw, images, labels[:9] if damage == "count" else labels, 0x802 if damage == "magic" else 0x803)
    path = raw / "train-images-idx3-ubyte"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-5])
    if damage == "empty":
        path.write_bytes(b"")
    cfg = DataConfig(root=str(tmp_path), download=False)
    if message is None:
        assert torch.equal(load_images(cfg), torch.from_numpy(images.astype(np.uint8)))
        return
    with pytest.raises(UserError) as err:
        load_images(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_data_through_the_cli(tmp_path):
    _write_idx(tmp_path / "MNIST" / "raw", np.zeros((4, 28, 28)), np.arange(3))
    proc = run_python(train_command(tmp_path / "run", f"data.root={tmp_path}"))
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    expected = f"dcgan: error: {labels} has 3 labels for 4 images in train-images-idx3-ubyte"
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [expected]


def test_secrets_never_reach_the_run_folder_or_the_logs(tmp_path, data_root):
    secret = "0123456789abcdef0123456789abcdef01234567"
    env = _env()
    env["WANDB_API_KEY"] = secret
    proc = run_python(train_command(tmp_path, "log.tracker=wandb", "train.max_steps=4"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
