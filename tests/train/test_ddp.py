"""2 real CPU ranks (gloo): forked in torchrun's environment (conftest.run_ranks), and once through `accelerate
launch` with the project's launch config (a user error on one rank)."""

import pytest
import torch

from conftest import (
    assert_same_tensors,
    load_weights,
    read_metrics,
    run_probe,
    run_python,
    run_train,
    train_command,
)
from dcgan.run import checkpoint

pytestmark = pytest.mark.slow


# The recipe options: R1's double backward (D steps 0, 2 and 4 of the 6) must not add an all-reduce,
# DiffAugment draws per rank, spectral norm's power iteration stays in step on both ranks.
RECIPE_OPTIONS = (
    "train.loss=least_squares model.d_spectral_norm=true train.r1_gamma=1 train.r1_every=2 "
    "train.diffaugment=[translation,cutout] optim.lr_scaling=linear optim.warmup_steps=4"
)


@pytest.mark.parametrize(
    "order",
    [
        "train.g_first=false",
        "train.g_first=true",
        # R1 on D steps 0, 2, 4 runs D uncompiled, the rest compiled: one all-reduce either way.
        pytest.param("train.compile=true train.r1_gamma=1 train.r1_every=2", id="compiled_r1"),
        pytest.param(RECIPE_OPTIONS, id="recipe"),
        # Adaptive augmentation on a conditional GAN with the hinge loss: p is adjusted from both ranks'
        # signs at steps 2, 4 and 6 and must be the same on each (else their augmentations would differ).
        pytest.param(
            "train.ada_target=0.01 train.ada_ramp_kimg=0.1 fault.check_every=2 model.conditional=true train.loss=hinge",
            id="ada_conditional",
        ),
    ],
)
def test_ddp_world_size_weight_equality_and_no_d_allreduce_in_g_step(tmp_path, data_root, order):
    _, reports = run_probe(
        tmp_path, f"output_dir={tmp_path / 'run'}", f"data.root={data_root}", "train.max_steps=6", *order.split()
    )
    for rank, report in enumerate(reports):
        assert report["rank"] == rank
        assert report["world_size"] == report["dist_world_size"] == 2
        assert report["distributed_type"] == "DistributedType.MULTI_CPU"
        assert report["steps"] == 6
        # Each D step all-reduces D once (one bucket) and G never; each G step the reverse.
        assert report["phases"]["d_step"] == [{"G": 0, "D": 1}] * 6
        assert report["phases"]["g_step"] == [{"G": 1, "D": 0}] * 6
        assert report["G_max_diff"] == 0.0 and report["D_max_diff"] == 0.0  # bitwise equal to rank 0
    # Different data and different noise on each rank.
    assert reports[0]["first_real_index"] != reports[1]["first_real_index"]
    assert reports[0]["noise_sample"] != reports[1]["noise_sample"]
    # The logged losses are the mean over both ranks (and over the steps since the last log), not rank 0's.
    names = ("loss_D", "loss_G", "D_x", "D_G_z", "r1")  # R1 is on in every variant (the default: gamma 1)
    if "ada_target" in order:
        names += ("ada_p", "ada_rt")
    assert set(reports[0]["step_metrics"][0]) == set(names)  # the losses' statistics, by name
    per_rank = torch.tensor([[[step[n] for n in names] for step in r["step_metrics"]] for r in reports])
    assert not torch.equal(per_rank[0], per_rank[1])  # (rank, step, metric)
    (logged,) = read_metrics(tmp_path / "run")  # smoke logs every 8 steps; 6 steps log once, at the end
    expected = per_rank.mean(dim=(0, 1))
    for i, key in enumerate(names):
        assert logged[key] == pytest.approx(expected[i].item(), rel=1e-5), key


@pytest.mark.parametrize("options", ["", "train.ada_target=0.05 train.ada_ramp_kimg=1 fault.check_every=4"])
def test_two_process_resume_is_bit_identical(tmp_path, data_root, options):
    # 512 images / (16 x 2) = 16 steps per epoch; stop mid-epoch 1, finish mid-epoch 2 (with ADA: inside an
    # adjustment window, each rank's own signs in the checkpoint).
    full, split = tmp_path / "full", tmp_path / "split"
    run_train(full, "train.max_steps=24", *options.split(), nproc=2)
    run_train(split, "train.max_steps=11", *options.split(), nproc=2)
    resumed = run_train(split, "train.max_steps=24", *options.split(), nproc=2)
    assert "resumed from" in resumed.stdout and "at step 11" in resumed.stdout
    assert_same_tensors(load_weights(full / "generator.safetensors"), load_weights(split / "generator.safetensors"))
    last = checkpoint.checkpoint_name(24)
    assert_same_tensors(
        load_weights(full / "checkpoints" / last / "discriminator.safetensors"),
        load_weights(split / "checkpoints" / last / "discriminator.safetensors"),
    )
    assert [m["step"] for m in read_metrics(split)] == [8, 11, 16, 24]
    if options:  # p the same on both ranks and in both runs; each rank's window its own
        states = [checkpoint.load_checkpoint(run / "checkpoints" / last)[2]["ada"] for run in (full, split)]
        assert states[0] == states[1] and states[0][0]["p"] == states[0][1]["p"] > 0


def test_resume_with_another_world_size_is_refused(tmp_path, data_root):
    run_train(tmp_path, "train.max_steps=3", nproc=2)
    proc = run_train(tmp_path, "train.max_steps=6", check=False)
    assert proc.returncode == 2
    assert "the run layout changed (world_size 2 -> 1)" in proc.stderr


def test_user_error_on_the_main_rank_stops_every_rank_once(tmp_path, data_root):
    """Missing data is found on rank 0 only; rank 1 must stop too instead of waiting at a barrier."""
    proc = run_python(
        train_command(tmp_path / "run", f"data.root={tmp_path / 'empty'}", "data.download=false", nproc=2),
        timeout=120,
    )
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("dcgan: error:")]
    assert len(ours) == 1 and "MNIST files missing in" in ours[0], proc.stderr[-3000:]


def test_hot_path_steps_the_torch_optimizer_unless_a_scaler_needs_accelerate():
    """fp32/bf16 skip Accelerate's per-call overhead (a sys.path search per step); fp16 keeps its scaler step."""
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    from dcgan.runtime import hot_optimizer

    params = list(torch.nn.Linear(2, 2).parameters())
    wrapped = Accelerator(cpu=True).prepare(torch.optim.Adam(params))
    assert isinstance(wrapped, AcceleratedOptimizer)
    assert hot_optimizer(wrapped) is wrapped.optimizer
    scaled = AcceleratedOptimizer(torch.optim.Adam(params), scaler=torch.amp.GradScaler("cpu"))
    assert hot_optimizer(scaled) is scaled
