"""A run folder holds one run: a resume keeps its recipe, a finished run is left alone, one trainer at a time."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, _env, assert_same_tensors, read_metrics, run_train, train_command
from dcgan import hardware
from dcgan.config import Config, load_config, may_change_key, resume_changes, to_dict, to_flat_values
from dcgan.config.resume import upgrade_config
from dcgan.errors import UserError
from dcgan.io.files import file_sha256, read_weights
from dcgan.run import checkpoint
from dcgan.run.layout import HISTORY_FILE
from dcgan.run.lock import LOCK_FILE
from dcgan.run.session import allowed_changes
from dcgan.runtime import check_device_settings
from dcgan.train.state import _legacy_model
from helpers import wandb_reader

# What defines a run. The policy is declared on the config fields (config.may_change); this list only
# makes a change of policy a visible decision in review.
RUN_DEFINING = {
    "seed", "data.name", "data.pixel_range", "data.limit", "data.image_size", "data.channels", "data.background",
    "data.skip_bad_images", "data.image_column", "data.label_column", "model.name", "model.z_dim", "model.width",
    "model.conditional", "model.d_conditioning", "model.class_dim", "model.output_bias", "model.d_spectral_norm",
    "train.batch_size",
    "train.mixed_precision", "train.sync_batchnorm", "train.loss", "train.g_first", "train.real_label",
    "train.d_loss_scale", "train.ema_decay", "train.r1_gamma", "train.r1_every", "train.diffaugment",
    "train.ada_target", "train.ada_augment", "train.ada_ramp_kimg",
}  # fmt: skip


def test_every_key_has_a_resume_policy_declared_on_its_field():
    keys = to_flat_values(Config())
    assert {key for key in keys if not may_change_key(key)} == RUN_DEFINING
    assert may_change_key("optim.lr_g") and may_change_key("train.max_steps") and may_change_key("data.root")


def test_resume_changes_split_by_policy_and_tolerate_older_checkpoints():
    saved = to_dict(Config())
    cfg = load_config(None, ["seed=1", "train.real_label=1.0", "optim.lr_d=1e-3", "log.every_steps=5"])
    fixed, free = resume_changes(saved, cfg)
    assert fixed == {"seed": (0, 1), "train.real_label": (0.9, 1.0)}
    assert free == {"optim.lr_d": (2e-4, 1e-3), "log.every_steps": (100, 5)}
    # A key the checkpoint predates counts as changed only when set away from its default.
    del saved["train"]["ema_decay"]
    assert resume_changes(saved, Config()) == ({}, {})
    assert resume_changes(saved, load_config(None, ["train.ema_decay=0"]))[0] == {"train.ema_decay": (0.999, 0.0)}


def _folder_state(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.rglob("*")}


@pytest.mark.slow
def test_a_changed_recipe_is_refused_and_allowed_changes_are_recorded(tmp_path, data_root):
    run_train(tmp_path, "train.max_steps=20")
    before = _folder_state(tmp_path)
    proc = run_train(
        tmp_path, "train.max_steps=40", "data.pixel_range=unit", "seed=3", "train.real_label=1.0",
        "optim.lr_g=0.1", check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("dcgan: error: cannot resume from ") and lines[0].endswith("checkpoint's:")
    assert lines[1:4] == ["  data.pixel_range: signed -> unit", "  seed: 0 -> 3", "  train.real_label: 0.9 -> 1.0"]
    assert "another output_dir" in lines[4] and len(lines) == 5  # lr_g may change: not listed
    assert _folder_state(tmp_path) == before  # nothing rewritten, nothing re-exported

    explicit = tmp_path / "checkpoints" / "step_0000020"  # resume= a checkpoint folder, not auto
    proc = run_train(tmp_path, f"resume={explicit}", "train.max_steps=24", "optim.lr_g=1e-4", "log.every_steps=4",
                     "log.tracker=wandb")  # fmt: skip
    assert f"resumed from {explicit} at step 20" in proc.stdout
    said = "changed since the checkpoint (recorded in run_history.jsonl): log.every_steps: 8 -> 4; "
    changed = "log.tracker: none -> wandb; optim.lr_g: 0.0002 -> 0.0001; resume: auto -> " + str(explicit)
    assert said + changed + "; train.max_steps: 20 -> 24" in proc.stdout
    first, second = (json.loads(line) for line in (tmp_path / HISTORY_FILE).read_text().splitlines())
    assert (first["step"], first["changes"], second["step"]) == (0, {}, 20)
    assert second["changes"]["optim.lr_g"] == [0.0002, 0.0001] and len(second["changes"]) == 5
    assert second["cpu"] == hardware.cpu_name() and second["cpu_flags"] == list(hardware.cpu_flags())
    # The checkpoint holds the config it was trained under; W&B's config says what changed, and when.
    saved = checkpoint.read_config(tmp_path / "checkpoints" / "step_0000024")
    assert saved["optim"]["lr_g"] == 1e-4 and saved["train"]["max_steps"] == 24
    (record_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    config = wandb_reader.config(record_file)
    assert config["optim.lr_g"] == 1e-4 and "optim.lr_g: 0.0002 -> 0.0001" in config["changed_at_step_20"]
    assert config["cpu"] == hardware.cpu_name()


def test_a_finished_run_is_left_as_it_is(tmp_path, data_root):
    run_train(tmp_path, "train.max_steps=12")
    before = _folder_state(tmp_path)
    proc = run_train(tmp_path, "train.max_steps=12")
    assert proc.stdout.strip() == (
        f"{tmp_path} is finished at step 12 (this config trains 12 steps): nothing to do; "
        "raise train.epochs or train.max_steps to train further"
    )
    assert _folder_state(tmp_path) == before
    exported = read_weights(tmp_path / "generator.safetensors")
    (tmp_path / "generator.safetensors").unlink()
    proc = run_train(tmp_path, "train.max_steps=8")  # below the step reached: finished too
    assert proc.stdout.strip().endswith("; wrote its missing generator.safetensors")
    again = read_weights(tmp_path / "generator.safetensors")
    assert_same_tensors(again[0], exported[0])
    assert again[1] == exported[1]  # the same metadata: step 12, the moving average


def _start(run_dir: Path, *overrides: str, nproc: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        train_command(run_dir, *overrides, nproc=nproc),
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _signal_family(pid: int, sig: signal.Signals) -> None:
    """`sig` to `pid` and all its descendants (torchrun puts each rank in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        os.kill(current, sig)


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


@pytest.mark.slow
def test_one_trainer_per_run_folder(tmp_path, data_root):
    """A 2-process owner takes the lock once, on its main process. While it holds the folder (paused, so
    that the test does not race its end), a second trainer is refused at once, naming it, and a third
    that may wait does; once the owner has ended, the third continues the run from where it stopped."""
    settings = ("train.max_steps=48", "train.epochs=4", "log.every_steps=16", "checkpoint.every_steps=0")
    owner = _start(tmp_path, *settings, nproc=2)
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.jsonl").is_file():
        assert owner.poll() is None and time.monotonic() < deadline, owner.communicate()
        time.sleep(0.05)
    _signal_family(owner.pid, signal.SIGSTOP)
    try:
        lock = json.loads((tmp_path / LOCK_FILE).read_text())
        assert _environ(lock["pid"])["RANK"] == "0"  # the main process, a child of the launcher
        started = time.monotonic()
        refused = run_train(tmp_path, *settings, check=False)
        assert refused.returncode == 2 and time.monotonic() - started < 60
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(f"dcgan: error: run folder {tmp_path} is in use by another trainer, pid {lock['pid']} ")
        assert f"since {lock['since']}" in line
        waiter = _start(tmp_path, "train.max_steps=64", "fault.lock_wait_s=300", *settings[1:], nproc=2)
        first = waiter.stdout.readline()
        assert first.startswith(f"waiting up to 300 s for the trainer that holds {tmp_path / LOCK_FILE}"), first
    finally:
        _signal_family(owner.pid, signal.SIGCONT)
    out, err = owner.communicate(timeout=300)
    assert owner.returncode == 0 and "done:" in out, err[-3000:]
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0 and "at step 48" in out, err[-3000:]
    assert [m["step"] for m in read_metrics(tmp_path)] == [16, 32, 48, 64]  # one run, no mixture
    assert not (tmp_path / LOCK_FILE).exists()


def test_emulated_bf16_is_refused_where_the_cpu_has_no_bf16(monkeypatch):
    cfg = load_config(None, ["train.mixed_precision=bf16", "train.cpu=true"])
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    with pytest.raises(UserError, match=r"has no bf16 instructions .* set train.allow_emulated_bf16=true"):
        check_device_settings(cfg.train)
    check_device_settings(load_config(None, ["train.mixed_precision=bf16", "train.allow_emulated_bf16=true"]).train)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)  # AVX512-BF16 or AMX: allowed as asked
    check_device_settings(cfg.train)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: None)  # cannot tell (no /proc): allowed
    check_device_settings(cfg.train)


def test_model_and_batch_size_changes_are_listed(tmp_path):
    """A checkpoint written as training writes one (weights, state, config, manifest), checked in process."""
    weights = {"w": torch.zeros(1)}
    saved = load_config(None, [f"output_dir={tmp_path}"])
    path = checkpoint.save_checkpoint(tmp_path, 4, weights, weights, {}, {}, 1, config=to_dict(saved))
    with pytest.raises(UserError) as refused:
        allowed_changes(path, load_config(None, ["model.z_dim=64", "train.batch_size=8", f"output_dir={tmp_path}"]))
    assert str(refused.value).splitlines()[1:3] == ["  model.z_dim: 100 -> 64", "  train.batch_size: 32 -> 8"]
    assert allowed_changes(path, load_config(None, ["optim.lr_g=1e-3", f"output_dir={tmp_path}"])) == {
        "optim.lr_g": (2e-4, 1e-3)
    }


def test_runs_saved_before_model_name_auto_still_resume():
    """Checkpoints from before `model.name: auto` and `model.width` named the 28 px model `dcgan`."""
    saved = to_dict(Config())
    saved["model"] = {"name": "dcgan", "z_dim": 100}
    assert resume_changes(saved, Config()) == ({}, {})
    fixed, _ = resume_changes(saved, load_config(None, ["model.z_dim=64"]))
    assert fixed == {"model.z_dim": (100, 64)}
    # Older still: no config in the checkpoint, only its model section in state.pt.
    assert _legacy_model(Config(), {"name": "dcgan", "z_dim": 100}) == {"name": "dcgan", "z_dim": 100}


@pytest.mark.slow
def test_a_unit_range_run_from_before_r1_gamma_was_per_signed_pixel_resumes_with_the_same_penalty(tmp_path, data_root):
    """Before checkpoint config_version 2 a [0, 1] run's r1_gamma was per [0, 1] pixel (0.25 there is 1 now)."""
    unit = ("data.pixel_range=unit", "train.r1_every=2")
    run_train(tmp_path / "full", "train.max_steps=12", *unit, "train.r1_gamma=1")
    run_train(tmp_path / "old", "train.max_steps=6", *unit, "train.r1_gamma=1")
    _as_written_before_version_2(tmp_path / "old" / "checkpoints" / "step_0000006", r1_gamma=0.25)
    assert checkpoint.read_config(tmp_path / "old" / "checkpoints" / "step_0000006")["train"]["r1_gamma"] == 1.0
    proc = run_train(tmp_path / "old", "train.max_steps=12", *unit, "train.r1_gamma=1")
    assert "at step 6" in proc.stdout and "r1_gamma" not in proc.stdout  # not a change: the same penalty
    a, b = (
        checkpoint.load_checkpoint(run / "checkpoints" / "step_0000012")
        for run in (tmp_path / "full", tmp_path / "old")
    )
    assert_same_tensors(a[1], b[1])  # D trained under the same penalty on both sides of the resume
    assert (
        upgrade_config({"data": {"pixel_range": "signed"}, "train": {"r1_gamma": 1.0}}, 1)["train"]["r1_gamma"] == 1.0
    )


def _as_written_before_version_2(path: Path, r1_gamma: float) -> None:
    """Rewrite a checkpoint as an older version wrote it: its gamma per [0, 1] pixel, no config_version."""
    config = yaml.safe_load((path / checkpoint.CONFIG_FILE).read_text())
    config["train"]["r1_gamma"] = r1_gamma
    (path / checkpoint.CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["config_version"]
    file = path / checkpoint.CONFIG_FILE
    manifest["files"][file.name] = {"bytes": file.stat().st_size, "sha256": file_sha256(file)}
    (path / "manifest.json").write_text(json.dumps(manifest))
