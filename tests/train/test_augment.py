"""DiffAugment (dcgan/train/augment.py): what each transformation does to known images, and that it is
differentiable, reproducible from its generator, and layout-preserving."""

import pytest
import torch

from dcgan.config import AUGMENTATIONS
from dcgan.train.augment import AUGMENT, cutout, diff_augment, translation


def _rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_config_offers_exactly_the_transformations_there_are():
    assert tuple(AUGMENT) == AUGMENTATIONS


def test_translation_shifts_whole_images_and_lets_zeros_in():
    images = torch.arange(1, 1 + 2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    moved = translation(images, _rng())
    for src, out in zip(images, moved, strict=True):
        # Find the shift that explains this output: every kept pixel is a source pixel moved by (dy, dx).
        found = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2) if torch.equal(out, _shifted(src, dy, dx))]
        assert len(found) == 1, "not a whole-pixel shift of at most 1/8 of the side (1 px at 8 px)"
    many = images.repeat(8, 1, 1, 1)
    shifts = {_shift_of(src, out) for src, out in zip(many, translation(many, _rng(1)), strict=True)}
    assert len(shifts) > 1  # each image draws its own shift


def _shifted(image, dy, dx):
    """`image` (C, H, W) moved so that out[y, x] = image[y + dy, x + dx], zero where that is outside."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[:, yd, xd] = image[:, ys, xs]
    return out


def _shift_of(src, out):
    return next((dy, dx) for dy in range(-1, 2) for dx in range(-1, 2) if torch.equal(out, _shifted(src, dy, dx)))


def test_cutout_zeroes_one_square_of_half_the_side_in_each_image():
    images = torch.ones(64, 1, 8, 8)
    out = cutout(images, _rng())
    zeroed = (out == 0).squeeze(1)
    for mask in zeroed:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert int(mask.sum()) == len(rows) * len(cols)  # a rectangle (clipped at the edge) ...
        assert len(rows) <= 4 and len(cols) <= 4  # ... of at most half the side
    assert int(zeroed.sum(dim=(1, 2)).max()) == 16  # a square fully inside the image: 4 x 4
    assert len({tuple(m.flatten().tolist()) for m in zeroed}) > 10  # placed per image


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ("color", "translation", "cutout")])
def test_augmentation_is_reproducible_differentiable_and_keeps_shape_and_layout(policy):
    images = torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    a, b = diff_augment(images, policy, _rng(3)), diff_augment(images, policy, _rng(3))
    assert torch.equal(a, b) and a.shape == images.shape
    assert not torch.equal(a, diff_augment(images, policy, _rng(4)))
    assert a.is_contiguous(memory_format=torch.channels_last)
    a.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # G's gradient flows through


def test_color_on_a_grey_image_changes_brightness_and_contrast_only():
    images = torch.linspace(-1, 1, 64).view(1, 1, 8, 8).repeat(3, 1, 1, 1)
    out = diff_augment(images, ("color",), _rng())
    for src, res in zip(images.flatten(1), out.flatten(1), strict=True):
        # An affine map of the pixel values: every output is a * input + b for one (a, b) per image.
        a = (res[-1] - res[0]) / (src[-1] - src[0])
        assert torch.allclose(res, a * src + (res[0] - a * src[0]), atol=1e-5)
