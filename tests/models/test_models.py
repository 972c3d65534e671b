from itertools import pairwise

import pytest
import torch
from torch import nn

from dcgan.config import ModelConfig, load_config
from dcgan.errors import UserError
from dcgan.models import Discriminator, Generator, PaperDiscriminator, PaperGenerator, build_models


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_generator_shapes_and_range():
    g = Generator(100)
    out = g(torch.randn(5, 100))
    assert out.shape == (5, 1, 28, 28)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("size", [28, 32])
def test_output_bias_is_one_learnable_zero_start_bias_per_channel_on_gs_last_layer_only(size):
    """model.output_bias: the only bias in either network, G's last; at init the same G as without it."""
    overrides = ["model.output_bias=true", "data.name=folder", f"data.image_size={size}", "data.channels=3"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    biased, d = build_models(cfg.model, size, 3)
    torch.manual_seed(0)
    plain, _ = build_models(load_config(None, overrides[1:]).model, size, 3)
    convs = [m for m in biased.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.bias is not None for m in convs] == [False] * (len(convs) - 1) + [True]
    assert torch.equal(convs[-1].bias, torch.zeros(3)) and convs[-1].bias.requires_grad
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in d.modules())
    assert _params(biased) == _params(plain) + 3
    z = torch.randn(4, 100)
    assert torch.equal(biased.eval()(z), plain.eval()(z))
    with pytest.raises(UserError, match="config key model.output_bias: is for the DCGANs"):
        load_config(None, ["model.output_bias=true", "model.name=mlp", "data.pixel_range=unit"])


def test_discriminator_returns_one_logit_per_image():
    assert Discriminator()(torch.randn(7, 1, 28, 28)).shape == (7,)


def test_parameter_counts_match_the_layer_table():
    # G: 100*128*4*4 + 128*64*3*3 + 64*32*4*4 + 32*1*4*4 conv weights, BN (2 per channel) for 128, 64, 32.
    g_conv = 100 * 128 * 16 + 128 * 64 * 9 + 64 * 32 * 16 + 32 * 16
    assert _params(Generator(100)) == g_conv + 2 * (128 + 64 + 32)
    # D: 1*32*4*4 + 32*64*4*4 + 64*128*3*3 + 128*1*4*4, BN for 64 and 128 (none after the first conv).
    d_conv = 32 * 16 + 32 * 64 * 16 + 64 * 128 * 9 + 128 * 16
    assert _params(Discriminator()) == d_conv + 2 * (64 + 128)


def test_no_layer_has_a_bias_and_layers_are_in_tutorial_order():
    g, d = build_models(ModelConfig())
    convs = [m for m in [*g.modules(), *d.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 8 and all(m.bias is None for m in convs)
    g_layers = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
                for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]  # fmt: skip
    assert g_layers == [(100, 128, 4, 2, 0), (128, 64, 3, 2, 1), (64, 32, 4, 2, 1), (32, 1, 4, 2, 1)]
    d_layers = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
                for m in d.modules() if isinstance(m, nn.Conv2d)]  # fmt: skip
    assert d_layers == [(1, 32, 4, 2, 1), (32, 64, 4, 2, 1), (64, 128, 3, 2, 1), (128, 1, 4, 1, 0)]
    assert isinstance(d.net[1], nn.LeakyReLU) and d.net[1].negative_slope == 0.2  # no BN after D's first conv
    assert isinstance(g.net[-1], nn.Tanh)


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    g, d = build_models(ModelConfig())
    conv = torch.cat([m.weight.flatten() for m in [*g.modules(), *d.modules()]
                      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])  # fmt: skip
    assert abs(conv.mean().item()) < 1e-3
    assert abs(conv.std().item() - 0.02) < 1e-3
    gammas = torch.cat([m.weight for m in [*g.modules(), *d.modules()] if isinstance(m, nn.BatchNorm2d)])
    betas = torch.cat([m.bias for m in [*g.modules(), *d.modules()] if isinstance(m, nn.BatchNorm2d)])
    assert abs(gammas.mean().item() - 1.0) < 5e-3 and abs(gammas.std().item() - 0.02) < 5e-3
    assert torch.all(betas == 0)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a, _ = build_models(ModelConfig())
    torch.manual_seed(3)
    b, _ = build_models(ModelConfig())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _paper_counts(size: int, channels: int, width: int, z_dim: int = 100) -> tuple[int, int]:
    """Parameters of the DCGAN paper's G and D from the layer table: k4 convolutions, no biases, BN (2 per channel)."""
    widths = [width * 2**i for i in reversed(range({32: 3, 64: 4}[size]))]  # G from 4x4 outward
    g = z_dim * widths[0] * 16 + sum(a * b * 16 for a, b in pairwise(widths)) + widths[-1] * channels * 16
    up = widths[::-1]  # D from the image inward
    d = channels * up[0] * 16 + sum(a * b * 16 for a, b in pairwise(up)) + up[-1] * 16
    return g + 2 * sum(widths), d + 2 * sum(up[1:])  # BN after every hidden layer of G, all but D's first


@pytest.mark.parametrize(("size", "channels", "width"), [(32, 1, 64), (32, 3, 16), (64, 1, 8), (64, 3, 64)])
def test_paper_family_shapes_and_parameter_counts(size, channels, width):
    g, d = build_models(ModelConfig(width=width), image_size=size, channels=channels)
    assert isinstance(g, PaperGenerator) and isinstance(d, PaperDiscriminator)
    images = g(torch.randn(3, 100))
    assert images.shape == (3, channels, size, size) and images.abs().max() <= 1
    assert d(images).shape == (3,)
    assert (_params(g), _params(d)) == _paper_counts(size, channels, width)
    convs = [m for m in [*g.modules(), *d.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(m.bias is None and m.kernel_size == (4, 4) for m in convs)


def test_paper_family_at_64_px_rgb_is_pytorch_examples_dcgan():
    """pytorch/examples' dcgan (ngf = ndf = 64, nz = 100, 3 channels): 3,576,704 and 2,765,568 parameters."""
    g, d = build_models(ModelConfig(), image_size=64, channels=3)
    assert (_params(g), _params(d)) == (3_576_704, 2_765_568)
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [512, 256, 128, 64, 3]


@pytest.mark.parametrize(
    ("size", "channels", "expected"), [(28, 1, Generator), (28, 3, Generator), (32, 3, PaperGenerator)]
)
def test_auto_follows_the_image_size(size, channels, expected):
    g, _ = build_models(ModelConfig(name="auto"), image_size=size, channels=channels)
    assert isinstance(g, expected) and g(torch.randn(2, 100)).shape == (2, channels, size, size)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=dcgan", "data.name=folder", "data.image_size=64"], "the tutorial's dcgan makes 28x28 images"),
        (["model.name=dcgan_paper"], "dcgan_paper makes 32x32 or 64x64 images"),
        (
            ["model.name=mlp", "data.pixel_range=unit", "data.name=folder", "data.channels=3"],
            "the mlp makes 28x28 grey",
        ),
        (["data.image_size=48", "data.name=folder"], "data.image_size: must be 28, 32 or 64, got 48"),
        (["data.channels=2", "data.name=folder"], "data.channels: must be 1 (grey) or 3 (RGB), got 2"),
        (["data.name=fashion_mnist", "data.image_size=32"], "fashion_mnist is 28x28 grey"),
        (["model.width=0"], "model.width: must be >= 1"),
        (
            ["model.name=mlp", "data.pixel_range=unit", "model.d_spectral_norm=true"],
            "model.d_spectral_norm: is for the",
        ),
    ],
)
def test_impossible_combinations_are_one_line_config_errors(overrides, message):
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("conditioning", [None, "channels", "projection"])
def test_spectral_norm_parametrises_every_d_weight_and_keeps_g_and_the_init(conditioning):
    overrides = ["model.d_spectral_norm=true"]
    if conditioning:
        overrides += ["model.conditional=true", f"model.d_conditioning={conditioning}"]
    cfg = load_config(None, overrides)
    classes = 10 if conditioning else 0
    torch.manual_seed(0)
    g, d = build_models(cfg.model, num_classes=classes)
    torch.manual_seed(0)
    plain_g, plain_d = build_models(load_config(None, overrides[1:]).model, num_classes=classes)
    weighted = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert weighted and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in g.modules())
    # The same init underneath (spectral_norm draws its start vectors after it), the same G.
    originals = [m.parametrizations.weight.original for m in weighted]
    plain = [m.weight for m in plain_d.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert all(torch.equal(a, b) for a, b in zip(originals, plain, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), plain_g.state_dict().values(), strict=True))
    # After some power iterations each layer's weight has largest singular value ~1.
    d.train()
    x = torch.randn(4, 1, 28, 28)
    for _ in range(30):
        d(x, torch.arange(4)) if conditioning else d(x)
    for m in weighted:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
