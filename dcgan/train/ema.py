"""An exponential moving average of G's weights: the generator that samples, evaluation and export use.

Averaging a GAN generator's iterates smooths out the oscillation of the two-player game and gives
cleaner samples than the last iterate (Yazici et al., "The Unusual Effectiveness of Averaging in GAN
Training", ICLR 2019; ProGAN, StyleGAN and BigGAN all sample from such an average). Training itself is
unchanged: D only ever plays against the live G.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorAverage:
    def __init__(self, generator: nn.Module, decay: float):
        """`generator` is the bare (unwrapped) training G; the average starts as a copy of it."""
        self.decay = decay
        self.source = generator
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)
        self._live = [p.detach() for p in generator.parameters()]
        self._averaged = list(self.model.parameters())

    def decay_at(self, step: int) -> float:
        """The decay for the update after `step` steps: ramped up from 0.1 so the first, random
        weights are forgotten within the first hundred steps instead of the first thousands."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend the live weights in after an optimiser step (one fused kernel for all parameters)."""
        torch._foreach_lerp_(self._averaged, self._live, 1.0 - self.decay_at(step))

    @torch.no_grad()
    def generator(self) -> nn.Module:
        """The averaged G in eval mode, with the live G's BatchNorm running statistics (not averaged,
        they are a moving average already)."""
        for averaged, live in zip(self.model.buffers(), self.source.buffers(), strict=True):
            averaged.copy_(live)
        return self.model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.generator().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
