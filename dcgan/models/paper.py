"""The DCGAN paper's generator and discriminator (Radford et al. 2015) for 32x32 and 64x64 images.

G: z -> ConvT k4 s1 p0 to 4x4, then strided ConvT k4 s2 p1 layers, each doubling the size and halving
the channels, down to `width` channels, then a ConvT to 1 or 3 channels and Tanh; BatchNorm + ReLU
between. D mirrors it: strided Conv k4 s2 p1 layers with LeakyReLU 0.2 (BatchNorm after all but the
first) from `width` channels up to 4x4, then a Conv k4 s1 p0 to one logit. No biases (BatchNorm
follows every hidden layer), as in pytorch/examples' dcgan. At 64 px and width 64 this is that example.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from einops import rearrange
from torch import nn

from dcgan.models.tutorial import down_block, output_layer, up_block


def hidden_widths(image_size: int, width: int) -> list[int]:
    """Channel counts of G's hidden layers from 4x4 outward: [8w, 4w, 2w, w] at 64 px, [4w, 2w, w] at 32 px."""
    doublings = (image_size // 4).bit_length() - 1  # 4x4 -> image_size
    return [width * 2**i for i in reversed(range(doublings))]


class PaperGenerator(nn.Module):
    def __init__(
        self, z_dim: int = 100, image_size: int = 64, channels: int = 3, width: int = 64, output_bias: bool = False
    ):
        super().__init__()
        self.z_dim = z_dim
        widths = hidden_widths(image_size, width)
        layers = up_block(z_dim, widths[0], 4, 1, 0)
        for c_in, c_out in pairwise(widths):
            layers += up_block(c_in, c_out, 4, 2, 1)
        layers += [output_layer(widths[-1], channels, output_bias), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, z_dim) noise -> (N, channels, image_size, image_size) images in [-1, 1]."""
        return self.net(rearrange(z, "n z -> n z 1 1"))


class PaperDiscriminator(nn.Module):
    def __init__(self, image_size: int = 64, channels: int = 3, width: int = 64):
        super().__init__()
        widths = hidden_widths(image_size, width)[::-1]
        layers = down_block(channels, widths[0], 4, batch_norm=False)
        for c_in, c_out in pairwise(widths):
            layers += down_block(c_in, c_out, 4)
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, channels, image_size, image_size) images -> (N,) logits."""
        return rearrange(self.net(x), "n 1 1 1 -> n")
