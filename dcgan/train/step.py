"""One GAN iteration: a D step and a G step (in the order `train.g_first` gives), each with its own optimiser.

The iteration is data plus phases, as in StyleGAN2-ADA's loss: the loss's pure functions (losses.py),
augmentation (DiffAugment or adaptive, ada.py) wherever D sees images, and lazy regularisers, each a
`LazyPhase` that runs every `every` D steps with its weight scaled by `every` (R1 on real images). Calling it
returns the step's statistics, the gradient norms too on a measured step; nothing leaves by side channel, so
a test calls it in-process.

Two DDP traps shape it: D is called twice per D step (real, then fake) before one backward (see the
broadcast_buffers note in dcgan/runtime.py), and the G step must not all-reduce D's gradients, so it runs D
under `no_sync` and back-propagates into G's parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator

from dcgan.config import OptimConfig, TrainConfig
from dcgan.runtime import hot_optimizer
from dcgan.train.ada import AdaptiveAugment
from dcgan.train.augment import diff_augment
from dcgan.train.losses import LOSSES, Stats, r1_penalty

# R1's gamma is per [-1, 1] pixel: on [0, 1] images each pixel's gradient is twice as large, its square four times.
R1_PER_RANGE = {"signed": 1.0, "unit": 0.25}

Inputs = tuple[torch.Tensor, ...]  # D's inputs: (images,) or (images, classes)


@dataclass(frozen=True)
class LazyPhase:
    """A regulariser of D's that runs every `every` D steps, its weight `gamma` times `every` on those steps
    (lazy regularisation, Karras et al. 2020); off at gamma 0."""

    name: str
    gamma: float
    every: int

    def due(self, step: int) -> bool:
        return self.gamma > 0 and step % self.every == 0


@dataclass
class StepResult:
    stats: Stats  # the losses' named statistics, detached, on the device
    grad_norms: torch.Tensor | None = None  # (D's, G's) gradient norm, on a measured step


class GANStep:
    """G and D (as Accelerate prepared them), their optimisers, and the recipe of `train` and `optim`."""

    def __init__(
        self,
        accelerator: Accelerator,
        networks: tuple[torch.nn.Module, torch.nn.Module],
        optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
        train: TrainConfig,
        optim: OptimConfig,
        z_dim: int,
        num_classes: int,
        noise: torch.Generator,
        pixel_range: str = "signed",
        ada: AdaptiveAugment | None = None,
    ):
        self.accelerator, self.train, self.optim = accelerator, train, optim
        self.G, self.D = networks
        self.opt_g, self.opt_d = optimizers
        self._hot_opt_g, self._hot_opt_d = hot_optimizer(self.opt_g), hot_optimizer(self.opt_d)
        self._D_eager = getattr(self.D, "_orig_mod", self.D)  # torch.compile's wrapper keeps the module it wraps
        self._cuda_graphs = train.compile and accelerator.state.dynamo_plugin.mode == "reduce-overhead"
        self.z_dim, self.num_classes, self.noise = z_dim, num_classes, noise
        self.loss = LOSSES[train.loss]
        self.r1 = LazyPhase("r1", train.r1_gamma * R1_PER_RANGE[pixel_range], train.r1_every)
        self.ada = ada
        # The newest lazily computed E||grad_x D(x)||^2, reported at every step between R1 steps.
        self.last_r1 = torch.zeros((), device=accelerator.device)
        self.phase: str | None = None  # "D" or "G" while that network's step runs: what a comm hook or profiler sees

    def __call__(self, real: torch.Tensor, labels: torch.Tensor | None, step: int, measure: bool = False) -> StepResult:
        """One D step and one G step on this rank's batch `real` (and its class `labels`, conditional models) at
        training step `step`; with `measure`, both networks' gradient norms come back too."""
        norms = torch.zeros(2, device=real.device) if measure else None
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # this iteration's graph outputs replace the last one's
        z = torch.randn(real.shape[0], self.z_dim, device=real.device, generator=self.noise)
        real_in, fake_in = (real,), ()
        if labels is not None:  # the fake classes are drawn uniformly, from the same per-rank stream
            fake_labels = torch.randint(self.num_classes, labels.shape, device=real.device, generator=self.noise)
            real_in, fake_in = (real, labels), (fake_labels,)
        fake = self.G(z, *fake_in)
        if self.train.g_first:
            g_stats = self._g_step((fake, *fake_in), norms)
            d_stats = self._d_step(real_in, (fake.detach(), *fake_in), step, norms)
        else:
            d_stats = self._d_step(real_in, (fake.detach(), *fake_in), step, norms)
            g_stats = self._g_step((fake, *fake_in), norms)
        return StepResult({**d_stats, **g_stats}, norms)

    def _d_step(self, real: Inputs, fake: Inputs, step: int, norms: torch.Tensor | None) -> Stats:
        """On an R1 step the penalty joins D's loss before the one backward: autograd.grad towards the images
        touches no weight gradient, so DDP still all-reduces D's gradients once, in that backward."""
        train = self.train
        self.phase = "D"
        self._hot_opt_d.zero_grad(set_to_none=True)
        r1_now = self.r1.due(step)
        if r1_now:
            real = (real[0].detach().requires_grad_(True), *real[1:])
        # Both through the uncompiled D on an R1 step: a compiled forward in between would bump the version
        # of the BatchNorm running statistics the eager graph saved, and its backward would refuse them.
        real_logits = self._discriminate(real, eager=r1_now)
        fake_logits = self._discriminate(fake, eager=r1_now)
        if self.ada is not None:
            self.ada.observe(real_logits)
        loss, stats = self.loss.d(real_logits, fake_logits, real_label=train.real_label, scale=train.d_loss_scale)
        if r1_now:
            loss = loss + self._r1_penalty(real_logits, real[0])
        if self.r1.gamma > 0:
            stats["r1"] = self.last_r1.clone()
        if self.ada is not None:
            stats.update(self.ada.stats())
        self.accelerator.backward(loss)
        self._before_step(self.D, self.opt_d, self.optim.clip_d, norms, 0)
        self._hot_opt_d.step()
        self.phase = None
        return stats

    def _r1_penalty(self, real_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The lazy R1 term, gamma/2 x E||grad_x D(x)||^2 times its interval (fp16: taken through the loss
        scale); keeps E||grad||^2 for the logs."""
        scaler = self.accelerator.scaler
        scale = scaler.scale(torch.ones((), device=images.device)) if scaler is not None else None
        penalty, stats = r1_penalty(real_logits, images, self.r1.gamma * self.r1.every, scale)
        self.last_r1.copy_(stats["r1"])
        return penalty

    def _g_step(self, fake: Inputs, norms: torch.Tensor | None) -> Stats:
        self.phase = "G"
        self._hot_opt_g.zero_grad(set_to_none=True)
        # D's forward and backward under no_sync: D's reducer neither expects nor all-reduces
        # gradients, and `inputs=` keeps autograd from computing D's weight gradients at all.
        with self.accelerator.no_sync(self.D):
            loss, stats = self.loss.g(self._discriminate(fake))
            self.accelerator.backward(loss, inputs=list(self.G.parameters()))
        self._before_step(self.G, self.opt_g, self.optim.clip_g, norms, 1)
        self._hot_opt_g.step()
        self.phase = None
        return stats

    def _discriminate(self, inputs: Inputs, eager: bool = False) -> torch.Tensor:
        """D's logits, the images through DiffAugment or adaptive augmentation when one is on.

        eager: through the uncompiled D (still under DDP) when train.compile is on, for the R1 step's
        double backward, which compiled graphs cannot take."""
        policy = self.train.diffaugment
        if policy:
            inputs = (diff_augment(inputs[0], policy, self.noise), *inputs[1:])
        elif self.ada is not None:
            inputs = (self.ada(inputs[0], self.noise), *inputs[1:])
        return (self._D_eager if eager else self.D)(*inputs)

    def _before_step(
        self, module: torch.nn.Module, optimizer, clip: float, norms: torch.Tensor | None, index: int
    ) -> None:
        """Inside one network's step, after its backward: optional clipping, and its norm on a measured step."""
        if not (clip or norms is not None):
            return
        self.accelerator.unscale_gradients(optimizer)  # fp16: the scaler then skips its own unscale
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        else:
            grads = [p.grad.detach().float() for p in module.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if norms is not None:
            norms[index] = norm
