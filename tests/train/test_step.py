"""One GAN iteration (dcgan/train/step.py) called in-process, as the training loop calls it: on one rank in the test
process, and on two gloo ranks (forked in torchrun's environment, no launcher), where its all-reduces are counted."""

import json
from pathlib import Path

import pytest
import torch

from conftest import REPO, SMOKE, run_ranks
from dcgan.config import load_config
from dcgan.models import build_models
from dcgan.runtime import make_accelerator
from dcgan.train.step import GANStep, LazyPhase


def _step(*overrides: str) -> GANStep:
    cfg = load_config(SMOKE, ["log.tracker=none", *overrides])
    acc = make_accelerator(cfg)
    torch.manual_seed(0)
    G, D = build_models(cfg.model, 28, 1, 0)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas)
    G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    return GANStep(
        acc, (G, D), (opt_g, opt_d), cfg.train, cfg.optim, cfg.model.z_dim, 0, torch.Generator().manual_seed(1)
    )


def _real(seed: int = 0) -> torch.Tensor:
    return torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_a_step_returns_its_statistics_and_the_gradient_norms_when_measured():
    step = _step()
    plain = step(_real(), None, 1)
    assert set(plain.stats) == {"loss_D", "D_x", "r1", "loss_G", "D_G_z"} and plain.grad_norms is None
    assert all(value.dim() == 0 and torch.isfinite(value) for value in plain.stats.values())
    measured = step(_real(1), None, 2, measure=True)
    assert measured.grad_norms.shape == (2,) and bool((measured.grad_norms > 0).all())
    assert step.phase is None  # between steps


def test_lazy_r1_runs_every_r1_every_d_steps_and_its_value_is_reported_in_between():
    assert LazyPhase("r1", 1.0, 4).due(8) and not LazyPhase("r1", 1.0, 4).due(6) and not LazyPhase("r1", 0.0, 4).due(8)
    step = _step("train.r1_gamma=1", "train.r1_every=4")
    computed = []
    for i in range(9):
        before = step.last_r1.clone()
        result = step(_real(i), None, i)
        computed.append(not torch.equal(before, step.last_r1))
        assert torch.equal(result.stats["r1"], step.last_r1)  # the newest value, fresh on R1 steps
    assert computed == [i % 4 == 0 for i in range(9)]
    without = _step("train.r1_gamma=0")
    assert "r1" not in without(_real(), None, 0).stats


@pytest.mark.parametrize(("g_first", "order"), [("true", ["G", "D", "D"]), ("false", ["D", "D", "G"])])
def test_the_phases_run_in_the_recipes_order(g_first, order):
    step = _step(f"train.g_first={g_first}")
    seen = []
    step.D.register_forward_pre_hook(lambda module, inputs: seen.append(step.phase))
    step(_real(), None, 1)
    assert seen == order  # D sees the fakes once in the G step, real and fake images in the D step


@pytest.mark.slow
def test_on_two_ranks_each_phase_all_reduces_its_own_network_once(tmp_path):
    proc = run_ranks([str(REPO / "tests" / "helpers" / "step_probe.py"), str(tmp_path), "train.r1_every=2"], nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        report = json.loads(Path(tmp_path / f"step_rank{rank}.json").read_text())
        assert report["rank"] == rank and report["world_size"] == 2
        # R1 steps (0 and 2) included: one all-reduce of D in the D step, one of G in the G step, never the other.
        assert report["phases"] == [{"D": {"G": 0, "D": 1}, "G": {"G": 1, "D": 0}}] * 4
        assert report["max_diff"] == 0.0  # both networks bitwise equal to rank 0's
