import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import run_python
from dcgan.config import Config, ModelConfig, load_config
from dcgan.errors import UserError
from dcgan.io.images import write_samples
from dcgan.models import build_models
from dcgan.models.file import export_generator
from dcgan.models.sampling import generate
from dcgan.run.layout import load_generator


@pytest.fixture
def generator_file(tmp_path):
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig(z_dim=16))
    cfg = Config(model=ModelConfig(z_dim=16))
    path = tmp_path / "generator.safetensors"
    export_generator(path, generator.eval(), cfg, step=7)
    return path, generator


def test_generator_file_round_trips_without_training_code(generator_file):
    path, original = generator_file
    loaded, pixel_range = load_generator(path)
    assert pixel_range == "signed" and loaded.z_dim == 16 and not loaded.training
    z = torch.randn(4, 16)
    assert torch.equal(loaded(z), original(z))


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match="is not a dcgan generator"):
        load_generator(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="is not a readable safetensors file"):
        load_generator(junk)
    with pytest.raises(UserError, match="does not exist"):
        load_generator(tmp_path / "missing")


def test_npy_is_uint8_white_on_black(tmp_path):
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0  # a bright stroke on a dark background
    write_samples(images, tmp_path / "a.npy")
    array = np.load(tmp_path / "a.npy")
    assert array.shape == (2, 28, 28) and array.dtype == np.uint8
    assert array[0, 0, 0] == 0 and array[0, 12, 13] == 255


def test_sample_cli_png_and_npy(generator_file, tmp_path):
    path, _ = generator_file
    for out in ("grid.png", "digits.npy"):
        proc = run_python(
            [sys.executable, "-m", "dcgan", "sample", str(path), "--n", "10", "--out", str(tmp_path / out)]
        )
        assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "grid.png").size == (4 * 30 + 2, 3 * 30 + 2)  # 10 images as 4 x 3
    assert np.load(tmp_path / "digits.npy").shape == (10, 28, 28)


def test_same_seed_same_samples(generator_file):
    generator, pixel_range = load_generator(generator_file[0])
    assert torch.equal(generate(generator, 3, 1, pixel_range), generate(generator, 3, 1, pixel_range))
    assert not torch.equal(generate(generator, 3, 1, pixel_range), generate(generator, 3, 2, pixel_range))


def test_bad_output_suffix(tmp_path):
    with pytest.raises(UserError, match=r"use a folder \(DIR/\), a .png \(grid\) or a .npy"):
        write_samples(torch.zeros(1, 1, 28, 28), tmp_path / "x.jpg")


@pytest.mark.parametrize("n", [5, 10, 64])
def test_grid_layout_matches_torchvision(n):
    from torchvision.utils import make_grid as torchvision_grid

    from dcgan.io.images import make_grid

    images = torch.rand(n, 1, 28, 28)
    ours, theirs = make_grid(images), torchvision_grid(images, nrow=math.ceil(math.sqrt(n)), padding=2)
    assert ours.shape == (1, *theirs.shape[1:]) and torch.equal(ours[0], theirs[0])


@pytest.fixture
def rgb_generator_file(tmp_path):
    """A 32 px RGB generator of the DCGAN paper's family, as a training run would export it."""
    cfg = load_config(None, ["data.name=folder", "data.image_size=32", "data.channels=3", "model.width=8"])
    torch.manual_seed(0)
    generator, _ = build_models(cfg.model, 32, 3)
    path = tmp_path / "generator.safetensors"
    export_generator(path, generator.eval(), cfg, step=3)
    return path


def test_rgb_generator_file_round_trips_and_writes_rgb_arrays_and_grids(rgb_generator_file, tmp_path):
    generator, pixel_range = load_generator(rgb_generator_file)
    images = generate(generator, 5, 0, pixel_range)
    assert images.shape == (5, 3, 32, 32)
    write_samples(images, tmp_path / "a.npy")
    array = np.load(tmp_path / "a.npy")
    assert array.shape == (5, 32, 32, 3) and array.dtype == np.uint8
    assert np.array_equal(array[2], (images[2].permute(1, 2, 0) * 255).round().byte().numpy())
    write_samples(images, tmp_path / "grid.png")
    grid = Image.open(tmp_path / "grid.png")
    assert grid.mode == "RGB" and grid.size == (3 * 34 + 2, 2 * 34 + 2)  # 5 images as 3 x 2


def test_sample_cli_writes_numbered_pngs_for_fid_tools(rgb_generator_file, tmp_path):
    out = tmp_path / "samples"
    command = [sys.executable, "-m", "dcgan", "sample", str(rgb_generator_file), "--n", "12", "--out", f"{out}/"]
    proc = run_python(command)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote 12 numbered PNG files to {out}/"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(12)]
    generator, pixel_range = load_generator(rgb_generator_file)
    expected = generate(generator, 12, 0, pixel_range)
    seventh = np.asarray(Image.open(out / "000007.png"))
    assert seventh.shape == (32, 32, 3) and np.array_equal(seventh, (expected[7].permute(1, 2, 0) * 255).round().byte())
    with pytest.raises(UserError, match="already holds PNG files; choose an empty or new folder"):
        write_samples(expected, out)  # an existing folder means a folder of PNGs too
    grey = write_samples(torch.rand(2, 1, 28, 28), f"{tmp_path}/new/deeper/")  # made, parents too
    assert grey == f"2 numbered PNG files to {tmp_path / 'new' / 'deeper'}/"
    assert Image.open(tmp_path / "new" / "deeper" / "000001.png").mode == "L"
