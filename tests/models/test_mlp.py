"""The tutorial's fully connected GAN (`model.name=mlp`): layers, config, training, resume and sampling."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO, assert_same_tensors, load_weights, run_python, run_train
from dcgan.config import Config, DataConfig, ModelConfig, load_config
from dcgan.errors import UserError
from dcgan.models import MLPDiscriminator, MLPGenerator, build_models
from dcgan.models.file import export_generator
from dcgan.models.sampling import generate
from dcgan.run.layout import load_generator


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_shapes_and_output_range():
    g, d = build_models(ModelConfig(name="mlp"))
    assert isinstance(g, MLPGenerator) and isinstance(d, MLPDiscriminator)
    images = g(torch.randn(5, 100))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1  # Sigmoid
    logits = d(images)
    assert logits.shape == (5,)
    assert isinstance(d.net[-1], nn.Linear)  # logits: the tutorial's Sigmoid lives in BCE-with-logits


def test_parameter_counts_and_layers_are_the_tutorials():
    g, d = MLPGenerator(100), MLPDiscriminator()
    layers_g = [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    layers_d = [(784, 1024), (1024, 512), (512, 256), (256, 1)]
    assert [(m.in_features, m.out_features) for m in g.modules() if isinstance(m, nn.Linear)] == layers_g
    assert [(m.in_features, m.out_features) for m in d.modules() if isinstance(m, nn.Linear)] == layers_d
    assert _params(g) == sum(a * b + b for a, b in layers_g) == 1_486_352  # weights and biases
    assert _params(d) == sum(a * b + b for a, b in layers_d) == 1_460_225
    assert all(m.negative_slope == 0.2 for m in [*g.modules(), *d.modules()] if isinstance(m, nn.LeakyReLU))
    assert [m.p for m in d.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    assert isinstance(g.net[-1], nn.Sigmoid)


def test_discriminator_dropout_is_on_in_training_only():
    d = MLPDiscriminator()
    x = torch.rand(4, 1, 28, 28)
    assert not torch.equal(d(x), d(x))
    d.eval()
    assert torch.equal(d(x), d(x))


def test_config_ships_and_refuses_a_signed_pixel_range():
    cfg = load_config(REPO / "configs" / "mnist_mlp.yaml")
    assert (cfg.model.name, cfg.data.pixel_range) == ("mlp", "unit")
    assert (cfg.train.epochs, cfg.train.batch_size) == (20, 32)
    with pytest.raises(UserError, match="config key data.pixel_range: the mlp generator ends in a Sigmoid"):
        load_config(None, ["model.name=mlp", "data.pixel_range=signed"])
    with pytest.raises(UserError, match="must be one of auto, dcgan, dcgan_paper, mlp"):
        load_config(None, ["model.name=resnet"])


def test_generator_file_rebuilds_the_mlp(tmp_path):
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(name="mlp", z_dim=8))
    cfg = Config(model=ModelConfig(name="mlp", z_dim=8), data=DataConfig(pixel_range="unit"))
    export_generator(tmp_path / "g.safetensors", generator.eval(), cfg, step=1)
    loaded, pixel_range = load_generator(tmp_path / "g.safetensors")
    assert isinstance(loaded, MLPGenerator) and pixel_range == "unit"
    z = torch.randn(3, 8)
    assert torch.equal(loaded(z), generator(z))


@pytest.mark.slow
def test_mlp_trains_resumes_exactly_and_samples(tmp_path, data_root):
    """D's dropout draws from torch's global RNG: a resumed run must restore it to stay bit-identical."""
    mlp = ("model.name=mlp", "data.pixel_range=unit")
    full, split = tmp_path / "full", tmp_path / "split"
    run_train(full, *mlp, "train.max_steps=12")
    run_train(split, *mlp, "train.max_steps=5")
    assert "at step 5" in run_train(split, *mlp, "train.max_steps=12").stdout
    assert_same_tensors(load_weights(full / "generator.safetensors"), load_weights(split / "generator.safetensors"))
    generator, pixel_range = load_generator(full)
    assert isinstance(generator, MLPGenerator) and pixel_range == "unit"
    assert generate(generator, 4, 0, pixel_range).shape == (4, 1, 28, 28)
    proc = run_python(
        [sys.executable, "-m", "dcgan", "sample", str(full), "--n", "6", "--out", str(tmp_path / "d.npy")]
    )
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "d.npy").shape == (6, 28, 28)
