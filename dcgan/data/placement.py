"""Where the training images live: on the training device when they fit its budget, else in host memory when
they fit that budget, else memory-mapped from their cache file (dcgan/data/cache.py).

On the device a batch is one gather and nothing crosses the bus; from host memory (or the map) each batch
is gathered on the CPU and copied over (a 64x3x64x64 uint8 batch is 0.8 MB).
"""

from __future__ import annotations

from pathlib import Path

import torch

_MEMINFO = Path("/proc/meminfo")


def available_host_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        line = next(line for line in _MEMINFO.read_text().splitlines() if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


HOST_SHARE = 0.9  # of the memory free at start, the most the images may take when data.host_budget_gb is unset


def in_host_memory(
    nbytes: int, budget_gb: float | None, sharing: int = 1, available: int | None = None
) -> tuple[bool, str]:
    """(whether `sharing` copies of `nbytes` of images fit the host budget, and if not why: a phrase)."""
    available = available_host_bytes() if available is None else available
    free = None if available is None else int(available * HOST_SHARE)
    budget = None if budget_gb is None else int(budget_gb * 2**30)
    need = nbytes * sharing
    copies = f" x {sharing} processes" if sharing > 1 else ""
    if budget is not None and need > budget and (free is None or budget <= free):
        return False, f"data: {amount(nbytes)} of images{copies} exceed data.host_budget_gb={budget_gb}"
    if free is not None and need > free:
        return False, f"data: {amount(nbytes)} of images{copies} exceed the {amount(available)} of free host memory"
    return True, ""


def amount(nbytes: float) -> str:
    """A byte count for people: 1.2 GB, 47.0 MB, 12.0 kB."""
    for unit, size in (("GB", 2**30), ("MB", 2**20)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes / 2**10:.1f} kB"


class ImageStore:
    """The training split as uint8 (N, C, H, W), handing out batches on the training device."""

    def __init__(self, images: torch.Tensor, device: torch.device, budget_gb: float, main: bool, mapped: str = ""):
        self.device = device
        fits = device.type == "cpu" or images.numel() <= budget_gb * 2**30
        self.images = images.to(device) if fits else images
        if main and mapped:
            how = "copied to the device once" if device.type != "cpu" and fits else "each batch gathered from the map"
            print(f"{mapped}, {how}", flush=True)
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
