"""What a run reports: offline W&B (read back from its record file), TensorBoard, files, console."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageStat
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, _env, read_metrics, run_python, run_train, train_command
from helpers import wandb_reader

LOSSES = {"loss_D", "loss_G", "D_x", "D_G_z", "r1"}  # r1: the default R1 penalty
LOGGED = LOSSES | {"grad_norm_D", "grad_norm_G", "lr_D", "lr_G", "images_per_s", "epoch"}


def _record_files(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def _assert_real_png(path, size=(242, 242), stddev=10):
    image = Image.open(path)
    assert image.format == "PNG" and image.size == size
    assert ImageStat.Stat(image.convert("L")).stddev[0] > stddev  # digits on a background, not a flat image


def test_wandb_offline_records_losses_images_and_config(tmp_path, data_root):
    proc = run_train(tmp_path, "log.tracker=wandb", "train.max_steps=20", "log.sample_every=10",
                     "log.run_name=probe", "log.tags=[smoke,ci]")  # fmt: skip
    assert f"wandb sync {tmp_path}/wandb/offline-run-*" in proc.stdout  # one line saying how to upload later
    (record_file,) = _record_files(tmp_path)
    rows = wandb_reader.history(record_file)
    scalar_rows = [r for r in rows if "loss_D" in r]
    assert [r["_step"] for r in scalar_rows] == [8, 16, 20]
    assert all(r.keys() >= LOGGED for r in scalar_rows)
    assert scalar_rows[0]["loss_D"] == pytest.approx(read_metrics(tmp_path)[0]["loss_D"])
    image_rows = [r for r in rows if "samples/_type" in r]
    assert [r["_step"] for r in image_rows] == [10, 20]
    assert all(r["samples/_type"] == "images/separated" for r in image_rows)
    media = sorted(record_file.parent.glob("files/media/images/samples_*.png"))
    assert len(media) == 2
    for path in media:
        _assert_real_png(path, stddev=1)  # a 20-step G draws near-black [0, 1] images: only not flat
    # Exactly the run's own grids (W&B numbers its media files its own way, not by step).
    sent = {np.asarray(Image.open(path)).tobytes() for path in media}
    assert sent == {np.asarray(Image.open(tmp_path / "samples" / f"step_{s:07d}.png")).tobytes() for s in (10, 20)}
    config = wandb_reader.config(record_file)
    assert config["train.batch_size"] == 16 and config["output_dir"] == str(tmp_path)
    assert config["world_size"] == 1 and config["precision"] == "no"
    assert "torch" in config["versions"]
    run = wandb_reader.run_record(record_file)
    assert run.display_name == "probe" and list(run.tags) == ["smoke", "ci"]


@pytest.mark.slow
def test_wandb_service_is_shut_down(tmp_path, data_root):
    """wandb-core outlives its parent unless stopped, and names that parent with --pid. Only this run's is
    looked for (other tests' wandb runs may be going on in the other xdist worker), and it must be seen
    while the run trains, or the check after it would prove nothing."""
    proc = subprocess.Popen(
        train_command(tmp_path, "log.tracker=wandb", "train.max_steps=32"),
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = False
    while proc.poll() is None:
        seen = seen or str(proc.pid) in _wandb_core_parents()
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert seen, "no wandb-core was seen for this run while it trained: the check below would prove nothing"
    assert str(proc.pid) not in _wandb_core_parents()


def _wandb_core_parents() -> list[str]:
    listing = subprocess.run(["pgrep", "-af", "wandb/bin/wandb-core"], capture_output=True, text=True).stdout
    return [line.split("--pid", 1)[1].split()[0] for line in listing.splitlines() if "--pid" in line]


@pytest.mark.slow
def test_wandb_by_default_names_groups_keeps_the_best_fid_and_the_model(tmp_path, data_root):
    """The default tracker, with no name or group set, in a SLURM array task, with an evaluation."""
    run_dir = tmp_path / "lr-sweep-2"
    command = train_command(run_dir, "log.tracker=wandb", "train.max_steps=32", "eval.every_epochs=1",
                            "eval.num_samples=200")  # fmt: skip
    assert command.count("log.tracker=none") == 1  # the tests' own default, overridden here
    proc = run_python(command, env={**_env(), "SLURM_ARRAY_JOB_ID": "77"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record_file,) = _record_files(run_dir)
    run = wandb_reader.run_record(record_file)
    assert (run.display_name, run.run_group) == ("lr-sweep-2", "array-77")
    minimised = {m.glob_name or m.name for m in wandb_reader.of_type(record_file, "metric") if m.summary.min}
    assert minimised == {"eval/fid_*", "eval/kid", "eval/kid_inception"}
    (artifact,) = wandb_reader.of_type(record_file, "artifact")
    assert artifact.type == "model" and set(artifact.aliases) == {"latest", "step-32"}
    assert [c.path for c in artifact.manifest.contents] == ["generator.safetensors"]
    metadata = json.loads(artifact.metadata)
    assert metadata["step"] == 32 and metadata["config"]["train"]["max_steps"] == 32
    assert metadata["metrics"]["eval/fid_mnist"] == read_metrics(run_dir)[-1]["eval/fid_mnist"]


@pytest.mark.slow
def test_resume_continues_the_same_wandb_run(tmp_path, data_root):
    run_train(tmp_path, "log.tracker=wandb", "train.max_steps=8")
    run_train(tmp_path, "log.tracker=wandb", "train.max_steps=16")
    first, second = _record_files(tmp_path)
    assert wandb_reader.run_id(first) == wandb_reader.run_id(second)
    steps = [r["_step"] for f in (first, second) for r in wandb_reader.history(f) if "loss_D" in r]
    assert steps == [8, 16]


def test_a_tracker_that_fails_to_start_does_not_stop_training(tmp_path, data_root):
    env = _env()
    env["WANDB_MODE"] = "no-such-mode"  # wandb.init raises
    proc = run_python(train_command(tmp_path, "log.tracker=wandb", "train.max_steps=8"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("wandb start failed") == 1
    assert (tmp_path / "generator.safetensors").is_file() and len(read_metrics(tmp_path)) == 1


def test_tensorboard_gets_the_same_scalars_and_the_grids(tmp_path, data_root):
    run_train(tmp_path, "log.tracker=tensorboard", "train.max_steps=16", "log.sample_every=8")
    events = sorted((tmp_path / "dcgan").glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == set(read_metrics(tmp_path)[0]) - {"step"}
    assert [e.step for e in accumulator.Scalars("loss_D")] == [8, 16]
    assert [e.step for e in accumulator.Images("samples")] == [8, 16]


@pytest.mark.slow
def test_run_folder_pictures(tmp_path, data_root):
    run_train(tmp_path, "log.sample_every=24")  # 2 epochs of 32 steps: grids at 24, 32, 48, 64
    frames = ["step_0000024.png", "step_0000032.png", "step_0000048.png", "step_0000064.png"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == frames
    gif = Image.open(tmp_path / "progress.gif")
    assert gif.n_frames == 4
    assert Image.open(tmp_path / "loss.png").size == (800, 600)
    (tmp_path / "progress.gif").unlink()
    proc = run_python([sys.executable, "-m", "dcgan", "gif", str(tmp_path)])
    assert proc.returncode == 0 and "(4 frames)" in proc.stdout
    assert Image.open(tmp_path / "progress.gif").n_frames == 4


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path, data_root):
    proc = run_train(tmp_path, "train.max_steps=16")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and lines[0].startswith("step 8/16 loss_D ") and " eta " in lines[0]


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path, data_root):
    """Under a pseudo-terminal (util-linux `script`) the main process draws a tqdm bar instead."""
    command = "stty cols 120 rows 40; " + " ".join(train_command(tmp_path, "train.max_steps=16"))
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], env=_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "16/16" in proc.stdout and "loss_D=" in proc.stdout and "epoch 0.50" in proc.stdout
    assert "step 8/16 loss_D" not in proc.stdout
