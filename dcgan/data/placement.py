"""Where the training images live: on the training device when they fit a budget, else in host memory.

On the device a batch is one gather and nothing crosses the bus; from host memory each batch is
gathered on the CPU and copied over (a 64x3x64x64 uint8 batch is 0.8 MB).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcgan.errors import UserError

_MEMINFO = Path("/proc/meminfo")


def available_host_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        line = next(line for line in _MEMINFO.read_text().splitlines() if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def check_fits_in_host_memory(nbytes: int, what: str, available: int | None = None) -> None:
    """A one-line UserError when `nbytes` would not fit in the host memory that is free now."""
    available = available_host_bytes() if available is None else available
    if available is not None and nbytes > available:
        raise UserError(
            f"{what} need {amount(nbytes)} as uint8, more than the {amount(available)} of free host memory; "
            "lower data.image_size (or data.channels), or use part of them with data.limit"
        )


def amount(nbytes: float) -> str:
    """A byte count for people: 1.2 GB, 47.0 MB, 12.0 kB."""
    for unit, size in (("GB", 2**30), ("MB", 2**20)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes / 2**10:.1f} kB"


class ImageStore:
    """The training split as uint8 (N, C, H, W), handing out batches on the training device."""

    def __init__(self, images: torch.Tensor, device: torch.device, budget_gb: float, main: bool):
        self.device = device
        fits = device.type == "cpu" or images.numel() <= budget_gb * 2**30
        self.images = images.to(device) if fits else images
        if main and not fits:
            print(
                f"data: {amount(images.numel())} of images exceed data.device_budget_gb={budget_gb}: "
                "kept in host memory, each batch copied to the device",
                flush=True,
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def index_device(self) -> torch.device:
        """Where batch indices must be to gather from the images."""
        return self.images.device

    def batch(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) on the training device; `rows` on `index_device`."""
        return self.images[rows].to(self.device, non_blocking=True)
