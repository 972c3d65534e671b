"""`dcgan export` and `dcgan push`: a model folder in the Hub's layout that `dcgan sample|eval` read back."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, _env
from dcgan.commands.cli import main
from dcgan.config import ModelConfig, load_config, to_dict
from dcgan.models import build_models
from dcgan.models.file import export_generator
from dcgan.run.layout import GENERATOR_FILE


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as training leaves it: config, checkpoints/, the exported G and an evaluation."""
    torch.manual_seed(0)
    generator, _ = build_models(ModelConfig())
    run = tmp_path / "runs" / "mine"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(None, [f"output_dir={run}", "data.root=/private/data", "log.entity=my-team"])
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    export_generator(run / GENERATOR_FILE, generator.eval(), cfg, step=100, weights="ema")
    rows = [{"step": 50, "loss_D": 1.0}, {"step": 100, "eval/fid_mnist": 3.5, "eval/kid": 0.02, "eval/seconds": 8.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


def _samples(source, tmp_path, capsys, name: str) -> np.ndarray:
    assert main(["sample", str(source), "--n", "8", "--out", str(tmp_path / f"{name}.npy")]) == 0
    capsys.readouterr()
    return np.load(tmp_path / f"{name}.npy")


def test_export_writes_a_self_describing_folder_that_samples_like_the_run(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["z_dim"] == 100 and config["pixel_range"] == "signed"
    assert config["data"] == {"name": "mnist", "image_size": 28, "channels": 1, "limit": 0}
    assert (config["weights"], config["step"], config["library"]) == ("ema", 100, "dcgan")
    assert config["recipe"]["train"]["batch_size"] == 32 and "output_dir" not in config["recipe"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dcgan\ntags:\n- gan\n")
    assert "Measured by the evaluation during training at step 100:" in card
    assert "| fid_mnist | 3.5 |" in card and "| kid | 0.02 |" in card and "seconds" not in card
    assert "![64 samples, seed 0](samples.png)" in card and "dcgan sample THIS_FOLDER" in card
    for text in (card, (out / "config.json").read_text()):  # nothing of the machine that trained it
        assert str(run_dir) not in text and "/private/data" not in text and "my-team" not in text
    assert Image.open(out / "samples.png").size == (242, 242)
    assert np.array_equal(_samples(out, tmp_path, capsys, "exported"), _samples(run_dir, tmp_path, capsys, "run"))


def test_the_card_prefers_dcgan_eval_and_says_when_there_is_nothing(run_dir, tmp_path):
    (run_dir / "eval.json").write_text(json.dumps({"fid_mnist": 2.0, "num_samples": 10000, "seed": 0}))
    assert main(["export", str(run_dir), str(tmp_path / "a")]) == 0
    card = (tmp_path / "a" / "README.md").read_text()
    assert "Measured by `dcgan eval` (10000 samples, seed 0):" in card and "| fid_mnist | 2 |" in card
    alone = shutil.copy(run_dir / GENERATOR_FILE, tmp_path / "g.safetensors")  # outside any run folder
    assert main(["export", str(alone), str(tmp_path / "b")]) == 0
    assert "Not evaluated: `dcgan eval RUN` before exporting" in (tmp_path / "b" / "README.md").read_text()


def test_sample_reads_a_model_from_the_local_hugging_face_cache(run_dir, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "hub"
    revision = "0" * 40
    snapshot = cache / "models--someone--digits" / "snapshots" / revision
    assert main(["export", str(run_dir), str(snapshot)]) == 0
    (cache / "models--someone--digits" / "refs").mkdir()
    (cache / "models--someone--digits" / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # someone/digits is not a path here
    assert np.array_equal(
        _samples("someone/digits", tmp_path, capsys, "hub"), _samples(run_dir, tmp_path, capsys, "run")
    )
    assert main(["sample", "someone/other", "--out", str(tmp_path / "x.png")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dcgan: error: someone/other is neither a path nor a model in the local Hugging Face cache")


def _push(run_dir, tmp_path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in _env().items() if not k.startswith("HF_")} | {"HF_HOME": str(tmp_path / "hf")}
    return subprocess.run(
        [sys.executable, "-m", "dcgan", "push", str(run_dir), "--repo-id", "someone/digits"],
        cwd=REPO, env=base | env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_push_fails_in_one_line_without_a_token_or_a_network(run_dir, tmp_path):
    """Everything up to the upload: the network is not available here."""
    proc = _push(run_dir, tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "dcgan: error: no Hugging Face token: log in with `hf auth login` or set HF_TOKEN, then push again\n"
    )
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)
    proc = _push(run_dir, tmp_path, HF_TOKEN="hf_not_a_real_token", HF_ENDPOINT="http://127.0.0.1:9")  # nobody there
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("dcgan: error: cannot push to the Hugging Face Hub as someone/digits (")
