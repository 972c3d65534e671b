"""How a config key is declared and checked: `may_change` marks what a resumed run may change, `check` reports
a bad value as one line naming the key; and the one rule that spans sections, what `model.name` stands for at
an image size."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from dcgan.errors import UserError

ON_RESUME = "on_resume"


def may_change(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """Declare a key (or a whole section) that a resumed run may change: run length, learning rates,
    logging, evaluation, checkpointing, faults, placement. Every other key defines the run, and a
    resume that changes it is refused (`resume_changes`): a key is run-defining unless marked here."""
    return field(default=default, default_factory=default_factory, metadata={ON_RESUME: "may change"})


def check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise UserError(f"config key {key}: {message}")


def check_architecture(model_name: str, image_size: int, channels: int) -> None:
    """An explicitly named model (`model.name`) must be able to make the data's images."""
    shape = f"data.image_size={image_size}, data.channels={channels}"
    fits = {
        "dcgan": (image_size == 28, f"the tutorial's dcgan makes 28x28 images ({shape})"),
        "dcgan_paper": (image_size != 28, f"dcgan_paper makes 32x32 or 64x64 images ({shape})"),
        "mlp": ((image_size, channels) == (28, 1), f"the mlp makes 28x28 grey images ({shape})"),
    }
    ok, why = fits.get(model_name, (True, ""))
    check(ok, "model.name", f"{why}; use model.name=auto to follow the data")


def resolved_model_name(name: str, image_size: int) -> str:
    """The architecture `model.name` stands for at this image size (`auto`: dcgan at 28 px, dcgan_paper above)."""
    if name != "auto":
        return name
    return "dcgan" if image_size == 28 else "dcgan_paper"
