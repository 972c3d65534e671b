"""Every image read the way its owner meant it: transparency over `data.background`, palette transparency without
Pillow's warning, 16-bit grey scaled (not clipped), CMYK JPEGs converted; images the tests make."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.config import DataConfig, load_config
from dcgan.data import ensure_dataset, load_dataset
from dcgan.data.decoding import decode as decode_image
from dcgan.errors import UserError

RED = (255, 0, 0)


def decode(path, size: int, channels: int, background: str = "white") -> np.ndarray:
    with Image.open(path) as image:
        return decode_image(image, size, channels, background)


def _half_transparent_rgba(path):
    """Left half opaque blue, right half fully transparent with red underneath (what a careless reader shows)."""
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[:, :8] = (0, 0, 255, 255)
    pixels[:, 8:] = (*RED, 0)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


@pytest.mark.parametrize("background, expected", [("white", (255, 255, 255)), ("black", (0, 0, 0))])
def test_transparent_pixels_take_the_background_not_the_colour_under_them(tmp_path, background, expected):
    image = decode(_half_transparent_rgba(tmp_path / "icon.png"), 16, 3, background)
    assert tuple(image[:, 4, 2]) == (0, 0, 255) and tuple(image[:, 4, 12]) == expected
    grey = decode(tmp_path / "icon.png", 16, 1, background)  # grey output: composited first, then grey
    assert grey[0, 4, 12] == expected[0]


def test_half_transparent_pixels_blend_with_the_background(tmp_path):
    Image.fromarray(np.full((8, 8, 2), (0, 128), np.uint8), "LA").save(tmp_path / "la.png")  # black at alpha 128
    assert decode(tmp_path / "la.png", 8, 1, "white")[0, 0, 0] == 127  # 255 * (1 - 128/255), rounded


def test_palette_images_with_transparency_decode_without_pillows_warning(tmp_path):
    indices = np.zeros((8, 8), np.uint8)
    indices[:, 4:] = 1
    palette = Image.fromarray(indices, "P")
    palette.putpalette([*RED, 0, 255, 0] + [0] * 762)
    palette.save(tmp_path / "p.png", transparency=bytes([0, 128]))  # index 0 transparent, 1 half: as bytes
    assert isinstance(Image.open(tmp_path / "p.png").info["transparency"], bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "should be converted to RGBA images" would fail here
        image = decode(tmp_path / "p.png", 8, 3, "white")
    assert tuple(image[:, 0, 0]) == (255, 255, 255) and tuple(image[:, 0, 7]) == (127, 255, 127)


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    levels = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    image = decode(tmp_path / "deep.png", 64, 1)
    assert np.array_equal(image[0], (levels / 257).round().astype(np.uint8))  # Pillow's convert("L") gives 255s


def test_cmyk_jpegs_come_out_in_their_rgb_colours(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8], rgb[8:] = (200, 50, 10), (20, 120, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    image = decode(tmp_path / "print.jpg", 16, 3).transpose(1, 2, 0).astype(int)
    assert np.abs(image[2:6, 2:14] - rgb[2:6, 2:14]).max() <= 6 and np.abs(image[10:14] - rgb[10:14]).max() <= 6


def test_the_background_is_a_setting_of_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    _half_transparent_rgba(tmp_path / "images" / "icon.png")
    loaded = {}
    for background in ("white", "black"):
        cfg = DataConfig(name="folder", root=str(tmp_path / "images"), image_size=16, channels=3, background=background)
        ensure_dataset(cfg)
        loaded[background] = load_dataset(cfg).images[0, :, 4, 12]
    assert torch.equal(loaded["white"], torch.tensor([255, 255, 255], dtype=torch.uint8))
    assert torch.equal(loaded["black"], torch.tensor([0, 0, 0], dtype=torch.uint8))
    with pytest.raises(UserError, match="data.background"):
        load_config(None, ["data.background=grey"])
