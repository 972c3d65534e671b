"""Adaptive augmentation (dcgan/train/ada.py): each operation applied per image with probability p, the
draws independent of p, p following r_t towards the target at the configured speed, its state exact."""

import pytest
import torch
from accelerate import Accelerator

from dcgan.train.ada import AdaptiveAugment
from dcgan.train.augment import xflip


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def _images(n=256):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _ada(accelerator, ops=("translation", "cutout"), target=0.6, ramp_kimg=1.0, per_adjust=100):
    return AdaptiveAugment(ops, target, ramp_kimg, per_adjust, accelerator)


def _changed(before, after):
    return (before != after).flatten(1).any(1)


def test_each_image_is_augmented_with_probability_p_and_the_draws_do_not_depend_on_p(accelerator):
    ada, images = _ada(accelerator, ops=("cutout",)), _images()
    ada.p = torch.tensor(0.0)
    assert torch.equal(ada(images, torch.Generator().manual_seed(1)), images)
    ada.p = torch.tensor(1.0)
    assert _changed(images, ada(images, torch.Generator().manual_seed(1))).all()
    ada.p = torch.tensor(0.25)
    generator = torch.Generator().manual_seed(1)
    share = _changed(images, ada(images, generator)).float().mean().item()
    assert 0.15 < share < 0.35
    # The stream moves on by the same draws whatever p is: a run's later noise does not depend on it.
    for p in (0.0, 0.5):
        ada.p = torch.tensor(p)
        other = torch.Generator().manual_seed(1)
        ada(images, other)
        assert torch.equal(other.get_state(), generator.get_state())


def test_augmentation_is_differentiable_towards_the_clean_images(accelerator):
    """R1 takes D's gradient at the clean real images through the augmentation, as StyleGAN2-ADA does."""
    ada = _ada(accelerator, ops=("xflip", "color", "translation", "cutout"))
    ada.p = torch.tensor(0.8)
    images = _images(16).requires_grad_(True)
    (grad,) = torch.autograd.grad(ada(images, torch.Generator().manual_seed(2)).square().sum(), images)
    assert grad.abs().sum() > 0


def test_p_rises_while_d_is_sure_of_the_real_images_and_falls_back_below_the_target(accelerator):
    ada = _ada(accelerator, target=0.6, ramp_kimg=1.0, per_adjust=100)  # p moves 0.1 per adjustment
    ada.observe(torch.ones(32))  # every real logit positive: r_t = 1
    ada.adjust()
    assert ada.rt.item() == 1.0 and ada.p.item() == pytest.approx(0.1)
    for _ in range(12):
        ada.observe(torch.tensor([1.0, 1.0, -1.0, 1.0]))  # r_t = 0.5, below the target
        ada.adjust()
    assert ada.rt.item() == 0.5 and ada.p.item() == 0.0  # down by 0.1 each time, clamped at 0
    for _ in range(15):
        ada.observe(torch.ones(4))
        ada.adjust()
    assert ada.p.item() == 1.0  # clamped at 1
    assert ada.stats().keys() == {"ada_p", "ada_rt"}


def test_the_state_round_trips_exactly_mid_window(accelerator):
    ada = _ada(accelerator)
    ada.observe(torch.tensor([2.0, -3.0, 0.5]))
    ada.adjust()
    ada.observe(torch.tensor([1.0, 1.0, -1.0]))  # a window under way: its signs are part of the state
    copy = _ada(accelerator)
    copy.load_state_dict(ada.state_dict())
    for a, b in ((ada.p, copy.p), (ada.rt, copy.rt), (ada.signs, copy.signs)):
        assert torch.equal(a, b)


def test_xflip_mirrors_about_half_of_the_images():
    images = _images()
    flipped = xflip(images, torch.Generator().manual_seed(3))
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images, strict=True)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(flipped, images, strict=True)])
    assert (mirrored | kept).all() and 0.35 < mirrored.float().mean().item() < 0.65
