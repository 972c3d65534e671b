"""Single-process training through the real entry points (subprocesses, CPU)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, _env, assert_same_tensors, load_weights, read_metrics, run_train
from dcgan.config import DataConfig, ModelConfig, load_config
from dcgan.data.idx import load_images
from dcgan.errors import UserError
from dcgan.models import build_models
from dcgan.models.sampling import generate
from dcgan.run import checkpoint
from dcgan.run.layout import load_generator
from dcgan.run.lock import claim
from dcgan.runtime import check_device_settings


def test_smoke_run_writes_the_run_folder(tmp_path, data_root):
    proc = run_train(tmp_path)
    assert "done:" in proc.stdout and proc.stderr.count("Traceback") == 0
    resolved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert resolved["output_dir"] == str(tmp_path) and resolved["train"]["batch_size"] == 16
    # 2 epochs x 32 steps; checkpoints every 20 steps and at epoch ends, the newest 2 kept.
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == ["step_0000060", "step_0000064"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000032.png", "step_0000064.png"]
    assert Image.open(tmp_path / "samples" / "step_0000064.png").size == (242, 242)  # 8 x 8 grid
    steps = [m["step"] for m in read_metrics(tmp_path)]
    assert steps == list(range(8, 65, 8))
    generator, pixel_range = load_generator(tmp_path / "generator.safetensors")
    assert generate(generator, 4, 0, pixel_range).shape == (4, 1, 28, 28)


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param("train.mixed_precision=no", id="fp32"),
        pytest.param("train.mixed_precision=bf16", id="bf16", marks=pytest.mark.slow),  # emulated: 4x slower
        # R1 at steps 0, 5, 10, ... through the uncompiled D, the other steps compiled.
        pytest.param("train.compile=true train.r1_gamma=1 train.r1_every=5", id="compiled_r1", marks=pytest.mark.slow),
        pytest.param("model.output_bias=true", id="output_bias", marks=pytest.mark.slow),
        pytest.param(
            # Every recipe option at once: an R1 step on each side of the split (steps 18 and 21), the
            # warm-up running across it, DiffAugment drawing from the checkpointed noise stream.
            "train.loss=hinge model.d_spectral_norm=true train.r1_gamma=1 train.r1_every=3 "
            "train.diffaugment=[color,translation,cutout] optim.warmup_steps=30 optim.lr_scaling=sqrt",
            id="recipe_options",
            marks=pytest.mark.slow,
        ),
        # Adaptive augmentation adjusted every 4 steps: the split at 21 falls inside a window, whose signs
        # the checkpoint carries; a low target and a fast ramp make p climb within these 44 steps.
        pytest.param(
            "train.ada_target=0.05 train.ada_ramp_kimg=1 fault.check_every=4 train.loss=least_squares",
            id="ada",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_resume_mid_epoch_is_bit_identical(tmp_path, data_root, setting):
    setting = (*setting.split(), "train.allow_emulated_bf16=true")  # bf16 numerics, on any CPU
    full, split = tmp_path / "full", tmp_path / "split"
    run_train(full, "train.max_steps=44", *setting)
    run_train(split, "train.max_steps=21", *setting)  # stops mid-epoch 0 (32 steps per epoch)
    assert not (split / "samples" / "step_0000032.png").exists()
    proc = run_train(split, "train.max_steps=44", *setting)
    assert "resumed from" in proc.stdout and "at step 21" in proc.stdout
    assert_same_tensors(load_weights(full / "generator.safetensors"), load_weights(split / "generator.safetensors"))
    a, b = (checkpoint.load_checkpoint(run / "checkpoints" / "step_0000044") for run in (full, split))
    assert_same_tensors(a[0], b[0])  # the training G (generator.safetensors above is its moving average)
    assert_same_tensors(a[1], b[1])  # discriminator
    assert a[2]["progress"] == b[2]["progress"] == {"step": 44, "epoch": 1, "batch_in_epoch": 12}
    assert a[2].get("ada") == b[2].get("ada")
    if "ada_target" in " ".join(setting):
        assert a[2]["ada"][0]["p"] > 0 and read_metrics(full)[-1]["ada_p"] > 0 and "ada_rt" in read_metrics(split)[0]
    for key in ("optim_g", "optim_d"):
        for pa, pb in zip(a[2][key]["state"].values(), b[2][key]["state"].values(), strict=True):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # The fixed-noise grid of epoch 1 is the same picture in both runs.
    grid = "samples/step_0000032.png"
    assert (full / grid).read_bytes() == (split / grid).read_bytes()


@pytest.mark.slow
def test_bf16_autocast_on_cpu(tmp_path, data_root):
    run_train(tmp_path / "bf16", "train.mixed_precision=bf16", "train.allow_emulated_bf16=true", "train.max_steps=16")
    run_train(tmp_path / "fp32", "train.max_steps=16")
    bf16, fp32 = read_metrics(tmp_path / "bf16"), read_metrics(tmp_path / "fp32")
    assert all(math.isfinite(m[k]) for m in bf16 for k in ("loss_D", "loss_G"))
    # bf16 really ran (Accelerate does not fall back to fp32 silently) and stayed close to fp32.
    assert bf16[0]["loss_D"] != fp32[0]["loss_D"]
    assert bf16[0]["loss_D"] == pytest.approx(fp32[0]["loss_D"], rel=0.1)
    weights = load_weights(tmp_path / "bf16" / "generator.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())  # fp32 masters


def test_seed_faithful_recipe_runs(tmp_path, data_root):
    """The tutorial's order and targets (G first, label 0.9, halved D loss, [0, 1] images) on the smoke data."""
    run_train(tmp_path, "train.g_first=true", "train.real_label=0.9", "train.d_loss_scale=0.5",
              "data.pixel_range=unit", "train.max_steps=16")  # fmt: skip
    metrics = read_metrics(tmp_path)
    assert all(math.isfinite(m["loss_D"]) and math.isfinite(m["loss_G"]) for m in metrics)
    generator, pixel_range = load_generator(tmp_path)
    assert pixel_range == "unit"  # sampling maps the output back with the range it was trained on


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.mixed_precision=fp16", "train.mixed_precision=fp16 needs a CUDA GPU; on CPU use bf16 or no"),
        ("train.sync_batchnorm=true", "train.sync_batchnorm=true needs CUDA GPUs"),
    ],
)
def test_settings_this_machine_cannot_run_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        check_device_settings(load_config(None, [override, "train.cpu=true"]).train)


def test_a_user_error_is_one_line_with_exit_code_2_before_any_work(tmp_path, data_root):
    """The CLI's contract for every UserError (the others are tested in process)."""
    proc = run_train(tmp_path / "run", "train.batchsize=3", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "dcgan: error: unknown config key train.batchsize (did you mean train.batch_size?)\n"
    assert not (tmp_path / "run").exists()


def test_unwritable_output_dir(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=f"output_dir {tmp_path / 'file' / 'run'} is not writable"):
        claim(tmp_path / "file" / "run", stale_s=60)


def test_resume_refusals(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step_0000004").mkdir(parents=True)
    with pytest.raises(UserError, match="already holds checkpoints and resume=never would train over them"):
        checkpoint.resolve_resume(root, "never")
    with pytest.raises(UserError, match="no such checkpoint folder"):
        checkpoint.resolve_resume(root, str(tmp_path / "nope"))


@pytest.mark.slow
def test_entry_points(tmp_path, data_root):
    console_script = str(Path(sys.executable).parent / "dcgan")  # installed by pip with the package
    for command in ([sys.executable, "-m", "dcgan", "--help"], [console_script, "train", "--help"]):
        proc = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan", "train", "--config", str(REPO / "configs" / "smoke.yaml"),
         f"output_dir={tmp_path}", f"data.root={data_root}", "train.max_steps=2", "log.tracker=none"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "generator.safetensors").is_file()


def _mean_image_correlation(images: torch.Tensor, reference: torch.Tensor) -> float:
    a, b = images.mean(0).flatten(), reference.mean(0).flatten()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.slow
def test_short_real_mnist_run_learns(tmp_path, data_root):
    """200 steps of the default recipe on the full split: the losses and samples move as a GAN's should."""
    run_train(tmp_path, "data.limit=0", "train.batch_size=32", "train.epochs=1", "train.max_steps=200",
              "log.every_steps=10", "checkpoint.every_steps=0")  # fmt: skip
    metrics = read_metrics(tmp_path)
    assert all(math.isfinite(m[k]) for m in metrics for k in ("loss_D", "loss_G", "D_x", "D_G_z"))
    assert all(m["D_x"] > m["D_G_z"] for m in metrics)  # D tells real from fake
    assert metrics[0]["loss_D"] < 2 * math.log(2)  # D learns at once from its chance-level start
    assert sum(m["loss_G"] for m in metrics[-5:]) / 5 > metrics[0]["loss_G"]  # and G's loss rises with it
    real = load_images(DataConfig(root=str(data_root), limit=2000)).float() / 255
    trained, pixel_range = load_generator(tmp_path)
    torch.manual_seed(0)
    untrained = build_models(ModelConfig())[0].eval()
    # The generated digits' mean image has MNIST's shape (a bright centre stroke, dark borders).
    assert _mean_image_correlation(generate(trained, 512, 0, pixel_range)[:, 0], real) > 0.7
    assert _mean_image_correlation(generate(untrained, 512, 0, "signed")[:, 0], real) < 0.3
