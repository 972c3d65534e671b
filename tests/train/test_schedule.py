"""The learning rates per step (dcgan/train/schedule.py): batch scaling rules and the warm-up."""

import pytest
import torch

from dcgan.config import load_config
from dcgan.train.schedule import batch_factor, lr_factor, set_learning_rates


@pytest.mark.parametrize(("rule", "factor"), [("none", 1.0), ("sqrt", 2.0), ("linear", 4.0)])
def test_batch_rules_at_four_times_the_base_batch(rule, factor):
    optim = load_config(None, [f"optim.lr_scaling={rule}"]).optim
    assert batch_factor(optim, 128) == pytest.approx(factor)
    assert batch_factor(optim, 32) == 1.0  # at the base batch every rule keeps the configured rates


def test_warmup_ramps_linearly_to_the_scaled_rate_then_holds():
    optim = load_config(None, ["optim.lr_scaling=linear", "optim.warmup_steps=4"]).optim
    assert [lr_factor(optim, 64, s) for s in range(6)] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_rates_go_into_both_optimisers():
    optim = load_config(None, ["optim.lr_g=1e-4", "optim.lr_d=4e-4", "optim.lr_scaling=sqrt"]).optim
    opt_g = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    opt_d = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    set_learning_rates(opt_g, opt_d, optim, global_batch=128, step=10)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-4) and opt_d.param_groups[0]["lr"] == pytest.approx(8e-4)
