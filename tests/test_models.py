import torch
from torch import nn

from dcgan.config import ModelConfig
from dcgan.models import Discriminator, Generator, build_models


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_generator_shapes_and_range():
    g = Generator(100)
    out = g(torch.randn(5, 100))
    assert out.shape == (5, 1, 28, 28)
    assert out.min() >= -1 and out.max() <= 1


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
