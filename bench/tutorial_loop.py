"""The reference: a training loop written the way the tutorial (and PyTorch's DCGAN example) writes it.

torchvision's MNIST through a DataLoader with no workers, ToTensor + Normalize on every sample, eager
modules with a Sigmoid on D and nn.BCELoss, two backward calls in D's step, and `.item()` on every
loss every step. The networks are the framework's own (same layers, same initialisation), so the
benchmark compares loops, not models.
"""

from __future__ import annotations

import torch
from torch import nn

from dcgan.config import ModelConfig
from dcgan.models import build_models


class TutorialLoop:
    """Owns its models, optimisers and data; `step()` runs one iteration like the tutorial does."""

    def __init__(self, data_root: str, batch_size: int, precision: str, device: torch.device, seed: int = 0):
        from torchvision import datasets, transforms  # the reference's cost includes torchvision's pipeline

        self.device, self.precision, self.batch_size = device, precision, batch_size
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        dataset = datasets.MNIST(data_root, train=True, download=False, transform=transform)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
        self._batches = iter(self.loader)
        torch.manual_seed(seed)
        generator, discriminator = build_models(ModelConfig())
        self.G = generator.to(device)
        self.D = nn.Sequential(discriminator, nn.Sigmoid()).to(device)
        self.criterion = nn.BCELoss()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.noise = torch.Generator(device).manual_seed(seed)

    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def next_batch(self) -> torch.Tensor:
        try:
            images, _ = next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            images, _ = next(self._batches)
        return images.to(self.device)

    def step(self, real: torch.Tensor | None = None) -> dict[str, float]:
        """One iteration (D step, then G step on the updated D); losses read back every step."""
        real = self.next_batch() if real is None else real
        ones = torch.ones(real.shape[0], device=self.device)
        zeros = torch.zeros(real.shape[0], device=self.device)

        self.D.zero_grad()
        with self._autocast():
            out_real = self.D(real)
        loss_real = self.criterion(out_real.float(), ones)
        self._backward(loss_real)
        z = torch.randn(real.shape[0], 100, device=self.device, generator=self.noise)
        with self._autocast():
            fake = self.G(z)
            out_fake = self.D(fake.detach())
        loss_fake = self.criterion(out_fake.float(), zeros)
        self._backward(loss_fake)
        self._step(self.opt_d)

        self.G.zero_grad()
        with self._autocast():
            out = self.D(fake)
        loss_g = self.criterion(out.float(), ones)
        self._backward(loss_g)
        self._step(self.opt_g)
        if self.scaler:
            self.scaler.update()
        return {
            "loss_D": (loss_real + loss_fake).item(),
            "loss_G": loss_g.item(),
            "D_x": out_real.float().mean().item(),
            "D_G_z": out.float().mean().item(),
        }
