"""dcgan/train/losses.py against values worked out by hand on tiny tensors."""

import math

import pytest
import torch

from dcgan.train.losses import (
    LOSSES,
    d_bce,
    d_hinge,
    d_least_squares,
    g_hinge,
    g_least_squares,
    g_nonsaturating,
    r1_penalty,
)


def test_d_bce_by_hand():
    loss, stats = d_bce(torch.zeros(3), torch.zeros(3))  # D undecided: log 2 on each side
    assert loss.item() == pytest.approx(2 * math.log(2))
    assert stats["D_x"].item() == pytest.approx(0.5)
    # real logit 2 towards 0.9: -(0.9 log s(2) + 0.1 log(1 - s(2))) = 0.9 * 0.126928 + 0.1 * 2.126928;
    # fake logit -1 towards 0: -log(1 - s(-1)) = -log s(1) = 0.313262; times the scale 0.5.
    loss, stats = d_bce(torch.tensor([2.0]), torch.tensor([-1.0]), real_label=0.9, scale=0.5)
    assert loss.item() == pytest.approx(0.5 * (0.326928 + 0.313262), abs=1e-6)
    assert stats == {"loss_D": pytest.approx(loss.item()), "D_x": pytest.approx(0.880797, abs=1e-6)}


def test_g_nonsaturating_by_hand():
    logits = torch.tensor([0.0, 2.0], requires_grad=True)
    loss, stats = g_nonsaturating(logits)
    assert loss.item() == pytest.approx((0.693147 + 0.126928) / 2, abs=1e-6)  # mean of -log s(logit)
    assert stats["D_G_z"].item() == pytest.approx((0.5 + 0.880797) / 2, abs=1e-6)
    assert loss.requires_grad and not any(v.requires_grad for v in stats.values())  # statistics are detached
    loss.backward()
    assert logits.grad.tolist() == pytest.approx([-0.25, -(1 - 0.880797) / 2], abs=1e-6)  # d/dx -log s(x) = s(x) - 1


def test_low_precision_logits_are_scored_in_float32():
    loss, stats = d_bce(torch.zeros(2, dtype=torch.bfloat16), torch.zeros(2, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in stats.values())


def test_every_loss_is_a_d_and_g_pair():
    assert set(LOSSES) == {"bce", "hinge", "least_squares"}
    assert LOSSES["bce"].d is d_bce and LOSSES["bce"].g is g_nonsaturating
    assert LOSSES["hinge"] == (d_hinge, g_hinge) and LOSSES["least_squares"] == (d_least_squares, g_least_squares)


def test_hinge_by_hand():
    # D: relu(1 - 2), relu(1 - 0.5) on real = 0, 0.5, mean 0.25; relu(1 + (-3)), relu(1 + 1) on fake = 0, 2, mean 1.
    loss, stats = d_hinge(torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 1.0]), real_label=0.9, scale=2.0)
    assert loss.item() == pytest.approx(2 * (0.25 + 1.0))  # the target does not apply to a margin
    assert stats["D_x"].item() == pytest.approx(1.25)  # the raw score
    loss, stats = g_hinge(torch.tensor([-3.0, 1.0]))
    assert loss.item() == pytest.approx(1.0) and stats["D_G_z"].item() == pytest.approx(-1.0)


def test_least_squares_by_hand():
    # D: ((2 - 0.9)^2 + (0 - 0.9)^2) / 2 = (1.21 + 0.81) / 2 = 1.01 on real; (1 + 0.25) / 2 = 0.625 on fake.
    loss, stats = d_least_squares(torch.tensor([2.0, 0.0]), torch.tensor([1.0, -0.5]), real_label=0.9, scale=0.5)
    assert loss.item() == pytest.approx(0.5 * (1.01 + 0.625))
    assert stats["D_x"].item() == pytest.approx(1.0)
    logits = torch.tensor([1.0, -0.5], requires_grad=True)
    loss, stats = g_least_squares(logits)
    assert loss.item() == pytest.approx((0 + 2.25) / 2) and stats["D_G_z"].item() == pytest.approx(0.25)
    loss.backward()
    assert logits.grad.tolist() == pytest.approx([0.0, -1.5])  # d/dx mean (x - 1)^2 = (x - 1) for 2 values


class _TinyD(torch.nn.Module):
    """Conv, BatchNorm (training mode: the batch couples the images) and LeakyReLU, as in the real D."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3, 2, 1, bias=False, dtype=torch.float64)
        self.bn = torch.nn.BatchNorm2d(3, dtype=torch.float64)
        self.out = torch.nn.Conv2d(3, 1, 3, 1, 0, bias=False, dtype=torch.float64)

    def forward(self, x):
        return self.out(torch.nn.functional.leaky_relu(self.bn(self.conv(x)), 0.2)).flatten()


def test_r1_penalty_against_finite_differences():
    torch.manual_seed(0)
    d, images = _TinyD(), torch.randn(3, 1, 6, 6, dtype=torch.float64)
    x = images.clone().requires_grad_(True)
    penalty, stats = r1_penalty(d(x), x, gamma=4.0)
    # The input gradient of sum D(x) by central differences, image by image and pixel by pixel.
    eps, numeric = 1e-6, torch.zeros_like(images)
    with torch.no_grad():
        for i in range(images.numel()):
            step = torch.zeros(images.numel(), dtype=torch.float64)
            step[i] = eps
            step = step.view_as(images)
            numeric.view(-1)[i] = (d(images + step).sum() - d(images - step).sum()) / (2 * eps)
    squared = numeric.square().flatten(1).sum(1).mean()
    assert stats["r1"].item() == pytest.approx(squared.item(), rel=1e-6)
    assert penalty.item() == pytest.approx(4.0 / 2 * squared.item(), rel=1e-6)
    # The penalty is differentiable in D's weights (the double backward), matching finite differences.
    weight = d.conv.weight

    def penalty_of(w):
        with torch.nn.utils.stateless._reparametrize_module(d, {"conv.weight": w}):
            x = images.clone().requires_grad_(True)
            return r1_penalty(d(x), x, gamma=4.0)[0]

    assert torch.autograd.gradcheck(penalty_of, (weight.detach().clone().requires_grad_(True),))


def test_r1_penalty_undoes_an_fp16_style_loss_scale():
    torch.manual_seed(0)
    d, images = _TinyD(), torch.randn(3, 1, 6, 6, dtype=torch.float64)
    x = images.clone().requires_grad_(True)
    plain = r1_penalty(d(x), x, gamma=1.0)[0]
    x = images.clone().requires_grad_(True)
    scaled = r1_penalty(d(x), x, gamma=1.0, scale=torch.tensor(1024.0, dtype=torch.float64))[0]
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-12)
