"""The tracker seam (Accelerate's log_with): what a short run sends to TensorBoard and to offline W&B."""

import subprocess

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_train
from dcgan.trainer import METRICS


def test_tensorboard_gets_the_logged_scalars(tmp_path, data_root):
    run_train(tmp_path, "log.tracker=tensorboard", "train.max_steps=16")
    (events,) = [p for p in (tmp_path / "dcgan").glob("events.out.tfevents.*")]
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {*METRICS, "images_per_s", "epoch"} <= scalars
    assert [e.step for e in accumulator.Scalars("loss_D")] == [8, 16]


def test_wandb_offline_run_is_written_and_its_service_stopped(tmp_path, data_root):
    proc = run_train(tmp_path, "log.tracker=wandb", "train.max_steps=8")
    (run,) = list((tmp_path / "wandb").glob("offline-run-*"))
    assert list(run.glob("run-*.wandb")), "no offline record file"
    assert "wandb sync" in proc.stdout + proc.stderr
    # wandb-core outlives its parent unless stopped; none may be left (none other runs during the tests).
    leftover = subprocess.run(["pgrep", "-af", "wandb/bin/wandb-core"], capture_output=True, text=True)
    assert leftover.stdout == "", leftover.stdout
