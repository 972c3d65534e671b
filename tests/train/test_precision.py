"""`train.mixed_precision=auto`: what it picks on which hardware, what a run says and records of it, and that a
resumed run keeps the precision it started with."""

import json

import pytest
import torch
import yaml

from conftest import run_train
from dcgan import hardware, runtime
from dcgan.config import load_config
from dcgan.errors import UserError
from dcgan.run.session import settle_precision


@pytest.mark.parametrize(
    ("cpu_bf16", "gpu", "gpu_bf16", "picked"),
    [
        (False, False, False, "no"),
        (True, False, False, "bf16"),
        (False, True, True, "bf16"),
        (None, True, False, "fp16"),
    ],
)
def test_auto_picks_bf16_only_where_it_is_native(monkeypatch, cpu_bf16, gpu, gpu_bf16, picked):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(runtime, "on_cpu", lambda train: not gpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: gpu_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla V100")
    precision, why = runtime.resolve_precision(load_config(None, ["train.mixed_precision=auto"]).train)
    assert precision == picked and why.startswith("auto: ")
    assert ("Tesla V100" in why) == gpu
    for explicit in ("no", "bf16", "fp16"):  # an explicit precision means itself, whatever the hardware
        assert runtime.resolve_precision(load_config(None, [f"train.mixed_precision={explicit}"]).train) == (
            explicit,
            "as configured",
        )


def test_a_resume_keeps_the_precision_its_checkpoint_started_with(tmp_path, monkeypatch):
    started = tmp_path / "checkpoints" / "step_0000010"
    started.mkdir(parents=True)
    (started / "config.yaml").write_text(yaml.safe_dump({"train": {"mixed_precision": "bf16"}}))
    auto = ["train.mixed_precision=auto", "train.cpu=true", f"output_dir={tmp_path}"]
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)  # a machine where bf16 is native
    cfg, why = settle_precision(load_config(None, auto))
    assert cfg.train.mixed_precision == "bf16" and why == f"auto: the precision this run started with ({started})"
    # On a CPU that would emulate bf16 the run is refused in one line, not continued several times slower.
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    with pytest.raises(UserError, match=r"was trained in bf16 .* set train.allow_emulated_bf16=true"):
        settle_precision(load_config(None, auto))
    assert settle_precision(load_config(None, [*auto, "resume=never"]))[0].train.mixed_precision == "no"


@pytest.mark.slow
def test_a_run_with_auto_says_what_it_picked_records_it_and_resumes_in_it(tmp_path, data_root):
    first = run_train(tmp_path, "train.mixed_precision=auto", "train.max_steps=3")
    expected, why = runtime.resolve_precision(load_config(None, ["train.mixed_precision=auto", "train.cpu=true"]).train)
    assert f"precision {expected} ({why})" in first.stdout
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["mixed_precision"] == expected
    history = [json.loads(line) for line in (tmp_path / "run_history.jsonl").read_text().splitlines()]
    assert history[0]["precision"] == expected and history[0]["precision_why"] == why
    resumed = run_train(tmp_path, "train.mixed_precision=auto", "train.max_steps=6")
    changed = [line for line in resumed.stdout.splitlines() if line.startswith("changed since the checkpoint")]
    assert "at step 3" in resumed.stdout and changed == [
        "changed since the checkpoint (recorded in run_history.jsonl): train.max_steps: 3 -> 6"
    ]  # the precision did not change
    kept = f"auto: the precision this run started with ({tmp_path / 'checkpoints' / 'step_0000003'})"
    assert f"precision {expected} ({kept})" in resumed.stdout
    history = [json.loads(line) for line in (tmp_path / "run_history.jsonl").read_text().splitlines()]
    assert history[1]["precision"] == expected and history[1]["precision_why"] == kept
