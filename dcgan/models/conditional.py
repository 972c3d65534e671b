"""Class-conditional versions of the DCGANs: G(z, class) and D(x, class), around the unconditional networks.

G takes the class through a learned embedding joined to z (concatenated), as the tutorial series'
conditional GAN does; the unconditional G underneath simply has `z_dim + class_dim` inputs. D takes it
one of two standard ways (`model.d_conditioning`):
- `channels`: the class as one-hot input planes beside the image, so D's first layer sees it everywhere;
- `projection` (Miyato & Koyama 2018): D's logit plus the inner product of a learned class embedding with
  D's last feature map, summed over positions.
Both Ds return one logit per image, like the unconditional ones, so every loss applies unchanged.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


class ConditionalGenerator(nn.Module):
    def __init__(self, inner: nn.Module, z_dim: int, num_classes: int, class_dim: int):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.embed = nn.Embedding(num_classes, class_dim)
        self.inner = inner  # an unconditional G with z_dim + class_dim inputs

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, z_dim) noise and (N,) class indices -> (N, C, H, W) images."""
        return self.from_class_vectors(z, self.embed(labels))

    def from_class_vectors(self, z: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Images from noise and class embeddings (N, class_dim), which may lie between classes (a class walk)."""
        return self.inner(torch.cat([z, vectors.to(z.dtype)], dim=1))


class ChannelsDiscriminator(nn.Module):
    def __init__(self, inner: nn.Module, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.inner = inner  # an unconditional D with image channels + num_classes inputs

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images and (N,) class indices -> (N,) logits."""
        planes = F.one_hot(labels, self.num_classes).to(x.dtype)
        planes = rearrange(planes, "n k -> n k 1 1").expand(-1, -1, *x.shape[2:])
        return self.inner(torch.cat([x, planes], dim=1))


class ProjectionDiscriminator(nn.Module):
    def __init__(self, inner: nn.Module, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        layers = list(inner.net)
        self.body = nn.Sequential(*layers[:-1])  # to D's last feature map
        self.head = layers[-1]  # the unconditional logit
        features = self.head.in_channels if isinstance(self.head, nn.Conv2d) else self.head.in_features
        self.embed = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # the DCGAN init, as D's convolutions

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images and (N,) class indices -> (N,) logits."""
        h = self.body(x)
        logits = self.head(h).flatten(1)[:, 0]
        pooled = h.sum(dim=(2, 3)) if h.dim() == 4 else h
        return logits + (self.embed(labels).to(pooled.dtype) * pooled).sum(dim=1)
