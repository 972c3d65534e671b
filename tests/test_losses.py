"""dcgan/losses.py against values worked out by hand on tiny tensors."""

import math

import pytest
import torch

from dcgan.losses import LOSSES, d_bce, g_nonsaturating


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
    assert set(LOSSES) == {"bce"}
    assert LOSSES["bce"].d is d_bce and LOSSES["bce"].g is g_nonsaturating
