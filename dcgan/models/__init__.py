"""The GANs, as plain single-device PyTorch modules, and how the config picks one.

tutorial.py holds the tutorial's 28x28 DCGAN (`dcgan`) and its fully connected GAN (`mlp`); paper.py the
DCGAN paper's family for 32 and 64 px (`dcgan_paper`). `model.name=auto` follows the data's image size.
All Ds return logits, so the loss is BCE-with-logits, which is safe under autocast.
"""

from __future__ import annotations

from torch import nn

from dcgan.config import ModelConfig
from dcgan.models.paper import PaperDiscriminator, PaperGenerator
from dcgan.models.tutorial import Discriminator, Generator, MLPDiscriminator, MLPGenerator, init_weights

__all__ = [
    "Discriminator",
    "Generator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PaperDiscriminator",
    "PaperGenerator",
    "architecture",
    "build_generator",
    "build_models",
]


def architecture(cfg: ModelConfig, image_size: int) -> str:
    """The model `model.name` stands for at this image size (`auto`: dcgan at 28 px, dcgan_paper above)."""
    if cfg.name != "auto":
        return cfg.name
    return "dcgan" if image_size == 28 else "dcgan_paper"


def _pair(cfg: ModelConfig, image_size: int, channels: int) -> tuple[nn.Module, nn.Module]:
    name = architecture(cfg, image_size)
    if name == "dcgan":
        return Generator(cfg.z_dim, channels), Discriminator(channels)
    if name == "dcgan_paper":
        return (
            PaperGenerator(cfg.z_dim, image_size, channels, cfg.width),
            PaperDiscriminator(image_size, channels, cfg.width),
        )
    if name == "mlp":
        return MLPGenerator(cfg.z_dim), MLPDiscriminator()
    raise ValueError(f"unknown model {cfg.name!r}")


def build_models(cfg: ModelConfig, image_size: int = 28, channels: int = 1) -> tuple[nn.Module, nn.Module]:
    """Both networks, initialised from the global RNG (seed it first for identical ranks).

    The DCGANs get the paper's N(0, 0.02) init; the MLP keeps PyTorch's default Linear init, as the tutorial did.
    """
    generator, discriminator = _pair(cfg, image_size, channels)
    if architecture(cfg, image_size) != "mlp":
        generator.apply(init_weights)
        discriminator.apply(init_weights)
    return generator, discriminator


def build_generator(cfg: ModelConfig, image_size: int = 28, channels: int = 1) -> nn.Module:
    """An uninitialised generator of the configured architecture, to load weights into."""
    return _pair(cfg, image_size, channels)[0]
