"""The moving average of G: its arithmetic, and that it changes what is sampled, never how G trains."""

import json

import pytest
import torch
from safetensors import safe_open

from conftest import assert_same_tensors, load_weights, run_train
from dcgan.config import ModelConfig
from dcgan.models import build_generator
from dcgan.run import checkpoint
from dcgan.run.layout import resolve_generator_file
from dcgan.train.ema import GeneratorAverage


def test_update_is_a_ramped_exponential_average():
    torch.manual_seed(0)
    live = build_generator(ModelConfig())
    average = GeneratorAverage(live, decay=0.999)
    expected = {k: v.clone() for k, v in live.named_parameters()}
    for step in range(3):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn_like(p))
        average.update(step)
        d = (1 + step) / (10 + step)  # the ramp, still below 0.999
        for name, p in live.named_parameters():
            expected[name] = d * expected[name] + (1 - d) * p.detach()
    for name, p in average.model.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-6, atol=1e-6)
        assert not p.requires_grad
    assert average.decay_at(100_000) == 0.999


def test_buffers_follow_the_live_generator():
    live = build_generator(ModelConfig())
    average = GeneratorAverage(live, decay=0.9)
    live.train()(torch.randn(8, 100))  # moves BatchNorm's running statistics
    averaged = average.generator()
    assert not averaged.training
    for a, b in zip(averaged.buffers(), live.buffers(), strict=True):
        assert torch.equal(a, b)


def _weights_kind(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata()["weights"]


@pytest.mark.slow
def test_averaging_changes_the_samples_not_the_training(tmp_path, data_root):
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    run_train(plain, "train.ema_decay=0", "train.max_steps=12")
    run_train(averaged, "train.ema_decay=0.99", "train.max_steps=12")
    a, b = (checkpoint.load_checkpoint(run / "checkpoints" / "step_0000012") for run in (plain, averaged))
    assert_same_tensors(a[0], b[0])  # the training G
    assert_same_tensors(a[1], b[1])  # D
    last = averaged / "checkpoints" / "step_0000012"
    assert not (plain / "checkpoints" / "step_0000012" / checkpoint.AVERAGE_FILE).exists()
    assert_same_tensors(load_weights(averaged / "generator.safetensors"), load_weights(last / checkpoint.AVERAGE_FILE))
    assert not torch.equal(load_weights(averaged / "generator.safetensors")["net.0.weight"], a[0]["net.0.weight"])
    assert _weights_kind(averaged / "generator.safetensors") == "ema"
    assert _weights_kind(plain / "generator.safetensors") == "last"
    # `dcgan sample|eval` on a checkpoint folder read the average, as the run's own samples did.
    assert resolve_generator_file(last) == last / checkpoint.AVERAGE_FILE
    # The decay is part of the recipe: a resume may not turn averaging on...
    proc = run_train(plain, "train.ema_decay=0.99", "train.max_steps=16", check=False)
    assert proc.returncode == 2 and "  train.ema_decay: 0.0 -> 0.99" in proc.stderr
    # ...unless the checkpoint predates stored configs (and the average): it then starts there, and says so.
    _as_written_before_configs_were_stored(plain / "checkpoints" / "step_0000012")
    proc = run_train(plain, "train.ema_decay=0.99", "train.max_steps=16")
    assert "holds no moving average of G; it starts from the loaded weights" in proc.stdout
    assert (plain / "checkpoints" / "step_0000016" / checkpoint.AVERAGE_FILE).is_file()


def _as_written_before_configs_were_stored(path):
    (path / checkpoint.CONFIG_FILE).unlink()
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"][checkpoint.CONFIG_FILE]
    (path / "manifest.json").write_text(json.dumps(manifest))
