"""The tutorial's two GANs for 28x28 images, as plain single-device PyTorch modules.

`dcgan` (the model for 28 px data): spatial sizes G 1 -> 4 -> 7 -> 14 -> 28, D 28 -> 14 -> 7 -> 4 -> 1; no layer has
a bias (BatchNorm follows most of them). `mlp`: the tutorial's first, fully connected GAN, kept as the
baseline the DCGAN is compared against. Both Ds return logits, so the loss is BCE-with-logits, which
is safe under autocast.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def up_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def output_layer(c_in: int, channels: int, bias: bool) -> nn.ConvTranspose2d:
    """G's last layer (k4 s2 p1); `bias` (model.output_bias) adds one zero-started bias per image channel without
    drawing from the RNG, so that a seed initialises every other weight as it does without it."""
    layer = nn.ConvTranspose2d(c_in, channels, 4, 2, 1, bias=False)
    if bias:
        layer.bias = nn.Parameter(torch.zeros(channels))
    return layer


def down_block(c_in: int, c_out: int, kernel: int, batch_norm: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, 2, 1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, channels: int = 1, output_bias: bool = False):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            *up_block(z_dim, 128, 4, 2, 0),
            *up_block(128, 64, 3, 2, 1),
            *up_block(64, 32, 4, 2, 1),
            output_layer(32, channels, output_bias),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, z_dim) noise -> (N, channels, 28, 28) images in [-1, 1]."""
        return self.net(rearrange(z, "n z -> n z 1 1"))


class Discriminator(nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            *down_block(channels, 32, 4, batch_norm=False),
            *down_block(32, 64, 4),
            *down_block(64, 128, 3),
            nn.Conv2d(128, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, channels, 28, 28) images -> (N,) logits."""
        return rearrange(self.net(x), "n 1 1 1 -> n")


class MLPGenerator(nn.Module):
    """The tutorial's lesson-1 G: z -> 256 -> 512 -> 1024 -> 784, LeakyReLU 0.2, Sigmoid (images in [0, 1])."""

    def __init__(self, z_dim: int = 100):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            *_dense(z_dim, 256),
            *_dense(256, 512),
            *_dense(512, 1024),
            nn.Linear(1024, 28 * 28),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, z_dim) noise -> (N, 1, 28, 28) images in [0, 1]."""
        return rearrange(self.net(z), "n (c h w) -> n c h w", c=1, h=28)


class MLPDiscriminator(nn.Module):
    """The tutorial's lesson-1 D: 784 -> 1024 -> 512 -> 256 -> 1, each hidden layer LeakyReLU 0.2 + Dropout 0.3."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            *_dense(28 * 28, 1024, dropout=0.3),
            *_dense(1024, 512, dropout=0.3),
            *_dense(512, 256, dropout=0.3),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) images -> (N,) logits (the tutorial's final Sigmoid lives in the loss)."""
        return rearrange(self.net(rearrange(x, "n c h w -> n (c h w)")), "n 1 -> n")


def _dense(n_in: int, n_out: int, dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): conv weights N(0, 0.02), BatchNorm gamma N(1, 0.02); the
    only conv bias (G's output layer with model.output_bias) keeps the zeros `output_layer` made it with."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
