"""The GANs, as plain single-device PyTorch modules, and how the config picks one.

tutorial.py holds the tutorial's 28x28 DCGAN (`dcgan`) and its fully connected GAN (`mlp`); paper.py the
DCGAN paper's family for 32 and 64 px (`dcgan_paper`). `model.name=auto` follows the data's image size.
All Ds return logits, so the loss is BCE-with-logits, which is safe under autocast.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from dcgan.config import ModelConfig, resolved_model_name
from dcgan.models.conditional import ChannelsDiscriminator, ConditionalGenerator, ProjectionDiscriminator
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
    return resolved_model_name(cfg.name, image_size)


def _generator(name: str, cfg: ModelConfig, image_size: int, inputs: int, channels: int) -> nn.Module:
    """An unconditional G with `inputs` noise values in and `channels` image channels out."""
    if name == "dcgan":
        return Generator(inputs, channels, cfg.output_bias)
    if name == "dcgan_paper":
        return PaperGenerator(inputs, image_size, channels, cfg.width, cfg.output_bias)
    if name == "mlp":
        return MLPGenerator(inputs)
    raise ValueError(f"unknown model {cfg.name!r}")


def _discriminator(name: str, cfg: ModelConfig, image_size: int, channels: int) -> nn.Module:
    """An unconditional D of images with `channels` input planes."""
    if name == "dcgan":
        return Discriminator(channels)
    if name == "dcgan_paper":
        return PaperDiscriminator(image_size, channels, cfg.width)
    if name == "mlp":
        return MLPDiscriminator()
    raise ValueError(f"unknown model {cfg.name!r}")


def _pair(cfg: ModelConfig, image_size: int, channels: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    name = architecture(cfg, image_size)
    if not cfg.conditional:
        return _generator(name, cfg, image_size, cfg.z_dim, channels), _discriminator(name, cfg, image_size, channels)
    if num_classes < 2:
        raise ValueError(f"a conditional GAN needs at least 2 classes, got {num_classes}")
    # G: an unconditional G whose input is z joined to the class embedding; D: with `channels`, one whose
    # input has a one-hot plane per class beside the image's channels, with `projection` the plain D.
    inner_g = _generator(name, cfg, image_size, cfg.z_dim + cfg.class_dim, channels)
    generator = ConditionalGenerator(inner_g, cfg.z_dim, num_classes, cfg.class_dim)
    if cfg.d_conditioning == "channels":
        discriminator = _discriminator(name, cfg, image_size, channels + num_classes)
        return generator, ChannelsDiscriminator(discriminator, num_classes)
    return generator, ProjectionDiscriminator(_discriminator(name, cfg, image_size, channels), num_classes)


def build_models(
    cfg: ModelConfig, image_size: int = 28, channels: int = 1, num_classes: int = 0
) -> tuple[nn.Module, nn.Module]:
    """Both networks, initialised from the global RNG (seed it first for identical ranks); `num_classes`
    for a conditional model (`model.conditional`).

    The DCGANs get the paper's N(0, 0.02) init; the MLP keeps PyTorch's default Linear init, as the tutorial did.
    """
    generator, discriminator = _pair(cfg, image_size, channels, num_classes)
    if architecture(cfg, image_size) != "mlp":
        generator.apply(init_weights)
        discriminator.apply(init_weights)
    if cfg.d_spectral_norm:
        normalise_spectrally(discriminator)
    return generator, discriminator


def normalise_spectrally(module: nn.Module) -> None:
    """Spectral normalisation (model.d_spectral_norm) of every conv, linear and embedding weight in `module`,
    after their init: the initialised weight becomes the parametrisation's `original`, and the power
    iteration's start vectors are drawn from the global RNG (identical on every rank)."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
            spectral_norm(layer)


def build_generator(cfg: ModelConfig, image_size: int = 28, channels: int = 1, num_classes: int = 0) -> nn.Module:
    """An uninitialised generator of the configured architecture, to load weights into."""
    return _pair(cfg, image_size, channels, num_classes)[0]
