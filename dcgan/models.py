"""The tutorial's DCGAN for 28x28 images, as plain single-device PyTorch modules.

Spatial sizes: G 1 -> 4 -> 7 -> 14 -> 28, D 28 -> 14 -> 7 -> 4 -> 1. No layer has a bias (BatchNorm
follows most of them). D returns logits, so the loss is BCE-with-logits, which is safe under autocast.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from dcgan.config import ModelConfig


def _up(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _down(c_in: int, c_out: int, kernel: int, batch_norm: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            *_up(z_dim, 128, 4, 2, 0),
            *_up(128, 64, 3, 2, 1),
            *_up(64, 32, 4, 2, 1),
            nn.ConvTranspose2d(32, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, z_dim) noise -> (N, 1, 28, 28) images in [-1, 1]."""
        return self.net(rearrange(z, "n z -> n z 1 1"))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            *_down(1, 32, 4, batch_norm=False),
            *_down(32, 64, 4),
            *_down(64, 128, 3),
            nn.Conv2d(128, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) images -> (N,) logits."""
        return rearrange(self.net(x), "n 1 1 1 -> n")


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(cfg: ModelConfig) -> tuple[Generator, Discriminator]:
    """Both networks, initialised from the global RNG (seed it first for identical ranks)."""
    generator, discriminator = Generator(cfg.z_dim), Discriminator()
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator


def build_generator(cfg: ModelConfig) -> Generator:
    """An uninitialised generator of the configured shape, to load weights into."""
    return Generator(cfg.z_dim)
