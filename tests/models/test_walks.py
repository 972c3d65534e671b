"""Latent walks: slerp stays on the sphere, walks loop back to their start, `dcgan sample --interpolate` writes a
GIF, a grid or frames, and a conditional G walks within a class or across classes at fixed noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.commands.cli import main
from dcgan.config import Config, ModelConfig, load_config
from dcgan.models import build_models
from dcgan.models.file import export_generator
from dcgan.models.sampling import render, sample_noise
from dcgan.models.walks import class_walk, noise_walk, slerp
from dcgan.run.layout import load_generator_and_metadata

DIGITS = tuple("0123456789")


def test_slerp_ends_at_its_points_and_keeps_the_norm_between_them():
    stream = torch.Generator().manual_seed(0)
    a, b = torch.randn(100, generator=stream), torch.randn(100, generator=stream)
    path = slerp(a, b, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-5)
    # A straight line's middle has ~0.71x the norm of its ends (orthogonal-ish Gaussian vectors); slerp's does not.
    assert path[2].norm() == pytest.approx((a.norm() + b.norm()) / 2, rel=1e-5)
    assert ((a + b) / 2).norm() < 0.8 * path[2].norm()
    assert torch.allclose(slerp(a, a * 2, torch.tensor([0.5])), a[None] * 1.5, atol=1e-5)  # parallel: a line


def test_a_noise_walk_starts_at_the_seeds_points_and_loops():
    walk = noise_walk(16, points=3, frames=4, seed=5)
    keys = sample_noise(3, 16, torch.Generator().manual_seed(5))
    assert walk.shape == (12, 16) and torch.equal(walk[[0, 4, 8]], keys)
    # The last frame is one step short of the first key: the loop closes without a repeated frame.
    assert 0 < (walk[-1] - keys[0]).norm() < (keys[2] - keys[0]).norm()


@pytest.fixture
def generator_file(tmp_path):
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(z_dim=16))
    path = tmp_path / "generator.safetensors"
    export_generator(path, generator.eval(), Config(model=ModelConfig(z_dim=16)), step=7)
    return path


def test_sample_interpolate_writes_a_looping_gif_a_grid_and_frames(generator_file, tmp_path, capsys):
    args = ["sample", str(generator_file), "--interpolate", "3", "--frames", "5", "--seed", "2"]
    assert main([*args, "--fps", "10", "--out", str(tmp_path / "walk.gif")]) == 0
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 15 and gif.size == (140, 140) and gif.info["loop"] == 0 and gif.info["duration"] == 100
    assert main([*args, "--out", str(tmp_path / "walk.png")]) == 0
    assert Image.open(tmp_path / "walk.png").size == (5 * 30 + 2, 3 * 30 + 2)  # a row per segment
    assert main([*args, "--out", str(tmp_path / "walk.npy")]) == 0
    generator, meta = load_generator_and_metadata(generator_file)
    expected = render(generator, noise_walk(16, 3, 5, seed=2), meta["pixel_range"])
    assert np.array_equal(np.load(tmp_path / "walk.npy"), (expected[:, 0] * 255).round().byte().numpy())
    assert "a walk through 3 random latent points" in capsys.readouterr().out
    assert main(["sample", str(generator_file), "--interpolate", "1", "--out", str(tmp_path / "x.gif")]) == 2
    assert main(["sample", str(generator_file), "--n", "4", "--out", str(tmp_path / "x.gif")]) == 2
    assert "--out FILE.gif is for a latent walk" in capsys.readouterr().err
    assert main(["sample", str(generator_file), "--interpolate-classes", "--out", str(tmp_path / "x.gif")]) == 2
    assert "needs a conditional generator" in capsys.readouterr().err


@pytest.fixture
def conditional_file(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, ["model.conditional=true", "model.z_dim=16"])
    generator, _ = build_models(cfg.model, num_classes=10)
    path = tmp_path / "cgan.safetensors"
    export_generator(path, generator.eval(), cfg, step=5, classes=DIGITS)
    return path


def test_a_conditional_walk_stays_in_its_class_or_walks_the_classes_at_fixed_noise(conditional_file, tmp_path, capsys):
    generator, meta = load_generator_and_metadata(conditional_file)
    args = ["sample", str(conditional_file), "--frames", "3", "--out"]
    assert main([*args, str(tmp_path / "sevens.npy"), "--interpolate", "2", "--class", "7"]) == 0
    noise = noise_walk(16, 2, 3, seed=0)
    sevens = render(generator, noise, meta["pixel_range"], torch.full((6,), 7))
    assert np.array_equal(np.load(tmp_path / "sevens.npy"), (sevens[:, 0] * 255).round().byte().numpy())
    assert "class 7" in capsys.readouterr().out

    assert main([*args, str(tmp_path / "classes.npy"), "--interpolate-classes", "--seed", "1"]) == 0
    frames = np.load(tmp_path / "classes.npy")
    assert frames.shape == (30, 28, 28)  # 10 classes x 3 frames, back to the first
    z = sample_noise(1, 16, torch.Generator().manual_seed(1)).expand(10, -1)
    keys = render(generator, z, meta["pixel_range"], torch.arange(10))  # each segment starts at a class, exactly
    assert np.array_equal(frames[::3], (keys[:, 0] * 255).round().byte().numpy())
    assert class_walk(generator, 3).shape == (30, generator.embed.embedding_dim)
    assert "through its 10 classes (0, 1, 2" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "x.gif"), "--interpolate-classes", "--class", "3"]) == 2
