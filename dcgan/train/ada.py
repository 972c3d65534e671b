"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data", StyleGAN2-ADA), with this project's augmentations (dcgan/train/augment.py).

Every image D sees, real or fake, in D's step, G's step and R1's, goes through each operation of
`train.ada_augment` with probability p, drawn per image and per operation from the rank's noise stream (the
draws do not depend on p, so the stream stays in step whatever p is). Applied with probability p < 1, an
augmentation cannot leak into G: the clean image stays the most likely one, so G gains nothing by drawing
augmented images (the paper's section 2.2).

p follows the overfitting signal r_t = E[sign(D's logit on real images)] (1: D is sure of every real
image): the signs are summed on the device at every D step; every `fault.check_every` steps (the stop
check's cadence) one all-reduce of two numbers averages them over the steps and ranks, and p moves by
sign(r_t - target) x (images since) / (ada_ramp_kimg x 1000), clamped to [0, 1]. All on the device: no host
sync in the loop, and every rank holds the same p.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from accelerate import Accelerator

from dcgan.train.augment import AUGMENT


class AdaptiveAugment:
    def __init__(
        self, ops: Sequence[str], target: float, ramp_kimg: float, images_per_adjust: int, accelerator: Accelerator
    ):
        self.ops = [name for name in AUGMENT if name in ops]  # the fixed order of augment.py
        self.target, self.accelerator = target, accelerator
        self.rate = images_per_adjust / (ramp_kimg * 1000)  # how far p may move at one adjustment
        device = accelerator.device
        self.p = torch.zeros((), device=device)
        self.rt = torch.zeros((), device=device)  # the newest r_t
        self.signs = torch.zeros(2, device=device)  # (sum of sign(real logit), count) since the last adjustment

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`images` through each operation with probability p per image (labels are never augmented)."""
        for name in self.ops:
            changed = AUGMENT[name](images, generator)
            chosen = torch.rand(images.shape[0], 1, 1, 1, device=images.device, generator=generator) < self.p
            images = torch.where(chosen, changed, images)
        return images

    def observe(self, real_logits: torch.Tensor) -> None:
        """Add one D step's real logits to the signal."""
        logits = real_logits.detach().float()
        self.signs += torch.stack([logits.sign().sum(), torch.tensor(logits.numel(), device=logits.device)])

    def adjust(self) -> None:
        """r_t over the steps since the last call and over every rank, and p one step towards the target (a
        collective: every rank calls it at the same step)."""
        totals = self.accelerator.reduce(self.signs.clone(), reduction="sum")
        self.rt = totals[0] / totals[1].clamp(min=1)
        self.p = (self.p + (self.rt - self.target).sign() * self.rate).clamp(0.0, 1.0)
        self.signs.zero_()

    def stats(self) -> dict[str, torch.Tensor]:
        return {"ada_p": self.p.clone(), "ada_rt": self.rt.clone()}

    def state_dict(self) -> dict[str, float | list[float]]:
        """This rank's state (its signs are its own), exactly: float32 values as Python floats."""
        return {"p": self.p.item(), "rt": self.rt.item(), "signs": self.signs.tolist()}

    def load_state_dict(self, state: dict) -> None:
        device = self.p.device
        self.p = torch.tensor(state["p"], device=device)
        self.rt = torch.tensor(state["rt"], device=device)
        self.signs = torch.tensor(state["signs"], device=device)
