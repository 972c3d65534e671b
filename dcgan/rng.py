"""Random streams: seeds derived by name, and the per-rank state a checkpoint must carry."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for the stream named by `parts` (e.g. ("noise", rank)); independent of Python's hash."""
    text = ":".join(map(str, ("dcgan", seed, *parts)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def capture(noise: torch.Generator) -> dict[str, torch.Tensor]:
    """This rank's RNG state: the training-noise stream and torch's global CPU (and CUDA) streams."""
    state = {"noise": noise.get_state(), "torch": torch.get_rng_state()}
    if noise.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(noise.device)
    return state


def restore(state: dict[str, torch.Tensor], noise: torch.Generator) -> None:
    noise.set_state(state["noise"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], noise.device)
