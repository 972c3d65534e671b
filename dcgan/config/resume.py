"""What a resume may change: every key is run-defining unless `may_change` marks it (or its section); a resume
that changes a run-defining key is refused, the others are recorded.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from dcgan.config.fields import ON_RESUME, resolved_model_name
from dcgan.config.load import to_flat_values, yaml_scalar
from dcgan.config.schema import Config


def resume_changes(saved: dict[str, Any], cfg: Config) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """What differs between a checkpoint's resolved config (`to_dict` form) and `cfg`, split by policy:
    (run-defining changes, changes a resumed run may make), each `{dotted key: (old, new)}`.

    A key the checkpoint does not know (saved by an older version) counts as changed only if `cfg`
    sets it away from its default; keys the code no longer has are ignored.
    """
    defaults, now, old = to_flat_values(Config()), to_flat_values(cfg), to_flat_values(saved)
    fixed: dict[str, tuple] = {}
    free: dict[str, tuple] = {}
    for key, value in now.items():
        before = old.get(key, defaults[key])
        if key == "model.name":  # `auto` and the architecture it picks at this image size are the same model
            size = old.get("data.image_size", defaults["data.image_size"])
            before, value = resolved_model_name(before, size), resolved_model_name(value, now["data.image_size"])
        if before != value:
            (free if may_change_key(key) else fixed)[key] = (before, value)
    return fixed, free


def upgrade_config(saved: dict[str, Any], version: int) -> dict[str, Any]:
    """A checkpoint's saved config (written under checkpoint config_version `version`) in today's meaning.

    Before version 2 a [0, 1] run's train.r1_gamma was per [0, 1] pixel; it is per [-1, 1] pixel now, four
    times the number for the same penalty, so the resumed run trains on exactly as before."""
    data, train = saved.get("data") or {}, saved.get("train") or {}
    if version < 2 and data.get("pixel_range") == "unit" and train.get("r1_gamma"):
        saved = {**saved, "train": {**train, "r1_gamma": train["r1_gamma"] * 4}}
    return saved


def change_lines(changes: dict[str, tuple]) -> list[str]:
    """`key: old -> new` for each change, sorted by key, values as YAML writes them."""
    return [f"{key}: {yaml_scalar(old)} -> {yaml_scalar(new)}" for key, (old, new) in sorted(changes.items())]


def may_change_key(key: str) -> bool:
    """Whether `may_change` marks this dotted key or a section above it."""
    cls: Any = Config
    for part in key.split("."):
        f = {f.name: f for f in dataclasses.fields(cls)}[part]
        if f.metadata.get(ON_RESUME) == "may change":
            return True
        cls = typing.get_type_hints(cls)[part]
    return False
