"""Checkpoint folders on disk: written atomically, verified by a manifest, loaded without unpickling.

A checkpoint is `checkpoints/step_XXXXXXX/` holding
  generator.safetensors, discriminator.safetensors   weights and BatchNorm buffers
  generator_ema.safetensors   the moving average of G's weights (train.ema_decay > 0): what samples
  state.pt        optimisers, scaler, progress and per-rank RNG states (plain tensors and numbers,
                  read back with torch.load(weights_only=True))
  config.yaml     the resolved config it was trained under, which a resume is checked against
  manifest.json   size and sha256 of each file, written last.
It is assembled in a hidden temporary folder and renamed into place, so a folder named step_* is
complete; the manifest catches later truncation or corruption, and loading skips such folders.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from dcgan.config.resume import upgrade_config
from dcgan.errors import UserError
from dcgan.io.files import file_sha256, fsync_dir, save_weights, write_atomic

FORMAT = "dcgan-checkpoint/1"
GENERATOR_FORMAT = "dcgan-generator/1"
AVERAGE_FILE = "generator_ema.safetensors"
CONFIG_FILE = "config.yaml"
# What the saved config's values mean; read_config converts older ones (dcgan/config/resume.py upgrade_config).
# 2 (2026-12-05): train.r1_gamma is per [-1, 1] pixel whatever data.pixel_range is.
CONFIG_VERSION = 2
_PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:07d}"


def save_checkpoint(
    root: Path,
    step: int,
    generator: dict[str, torch.Tensor],
    discriminator: dict[str, torch.Tensor],
    state: dict[str, Any],
    metadata: dict[str, str],
    keep_last: int,
    averaged: dict[str, torch.Tensor] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step` under `root` (main process only), then prune to the newest `keep_last`."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_weights(tmp / "generator.safetensors", generator, metadata)
        save_weights(tmp / "discriminator.safetensors", discriminator, metadata)
        if averaged is not None:
            save_weights(tmp / AVERAGE_FILE, averaged, {**metadata, "weights": "ema"})
        write_atomic(tmp / "state.pt", lambda p: torch.save(state, p))
        if config is not None:
            write_atomic(tmp / CONFIG_FILE, lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))
        files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(tmp.iterdir())}
        manifest = {"format": FORMAT, "step": step, "config_version": CONFIG_VERSION, "files": files}
        write_atomic(tmp / "manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=1)))
        if final.exists():  # a re-save of the same step (e.g. a resumed run ending where it began)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except (RuntimeError, SafetensorError) as e:
        # torch.save and safetensors report a failed write as these, not as OSError; a full disk is the
        # usual cause, so say so when it is (measured before the partial folder is removed).
        free = shutil.disk_usage(root).free
        reason = "No space left on device" if free < (1 << 20) else str(e).strip().splitlines()[0]
        raise OSError(f"{reason}; {free / 2**20:.1f} MB free") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_atomic(root / "latest", lambda p: p.write_text(final.name + "\n"))
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def snapshot(source: Path, dest: Path, extra_files: dict[str, str]) -> None:
    """Replace `dest` with a copy of checkpoint folder `source` plus small text files (e.g. why it was kept).

    Files are hard links where the filesystem allows (no extra space; rotation deleting `source` leaves
    them intact). The copy is assembled under a `.tmp-` name (cleaned by `remove_partial` if killed), so
    `dest` is always complete; for a moment between two renames it may be absent.
    """
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    old = dest.with_name(f".tmp-{dest.name}-old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=_link_or_copy)
    for name, text in extra_files.items():
        (tmp / name).write_text(text)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def remove_partial(root: Path) -> None:
    """Delete temporary folders and files left by a save that was killed before its rename."""
    if root.is_dir():
        for leftover in root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in root.glob(".*.tmp-*"):
            leftover.unlink(missing_ok=True)


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders under `root`, oldest first (by step, not by time)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]) if p.name[len(_PREFIX) :].isdigit() else -1)


def verify(path: Path) -> str | None:
    """None if `path` is a complete checkpoint, else what is wrong with it."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no readable manifest.json"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"not a {FORMAT} checkpoint"
    for name, entry in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, expected {entry['bytes']}"
        if file_sha256(file) != entry["sha256"]:
            return f"{name} does not match its checksum"
    return None


def latest_valid(root: Path) -> Path | None:
    """The newest checkpoint under `root` that verifies; broken ones are skipped with a warning."""
    for path in reversed(list_checkpoints(root)):
        problem = verify(path)
        if problem is None:
            return path
        warnings.warn(f"skipping checkpoint {path}: {problem}", stacklevel=2)
    return None


def resolve_resume(root: Path, resume: str) -> Path | None:
    """The checkpoint `resume` (auto | never | a folder) asks for under `root`, or None to start fresh."""
    remove_partial(root)  # leftovers of a save that was killed
    if resume == "never":
        if list_checkpoints(root):
            raise UserError(
                f"{root} already holds checkpoints and resume=never would train over them; "
                "use resume=auto to continue, or another output_dir"
            )
        return None
    if resume == "auto":
        return latest_valid(root)
    path = Path(resume)
    if not path.is_dir():
        raise UserError(f"resume={resume}: no such checkpoint folder (or use auto / never)")
    return path


def read_config(path: Path) -> dict[str, Any] | None:
    """The resolved config checkpoint `path` was trained under; None for checkpoints written before they held it."""
    file = path / CONFIG_FILE
    if not file.is_file():
        return None
    try:
        config = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot resume from {path}: {CONFIG_FILE} is unreadable ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"cannot resume from {path}: {CONFIG_FILE} does not hold a config")
    try:
        version = json.loads((path / "manifest.json").read_text()).get("config_version", 1)
    except (OSError, ValueError, AttributeError):
        version = 1
    return upgrade_config(config, version)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(generator weights, discriminator weights, state) from a verified checkpoint folder."""
    problem = verify(path)
    if problem is not None:
        raise UserError(f"cannot resume from {path}: {problem}")
    try:
        generator = load_file(str(path / "generator.safetensors"))
        discriminator = load_file(str(path / "discriminator.safetensors"))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"cannot resume from {path}: state.pt holds objects other than tensors and numbers; "
            "refusing to unpickle them"
        ) from None
    except (SafetensorError, RuntimeError, OSError) as e:
        raise UserError(f"cannot resume from {path}: {e}") from None
    return generator, discriminator, state
