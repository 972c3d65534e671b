"""A feature network for your own images: `dcgan train-classifier` on a labelled folder, then training
and `dcgan eval` with it (`eval.classifier`, `--classifier`), metrics named for it. One network and one
trained run serve every test here."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock  # installed with torch

from conftest import _env, read_metrics, run_python, run_train
from dcgan.eval.networks import load_classifier
from dcgan.eval.offline import evaluate

pytestmark = pytest.mark.slow
RGB32 = ("data.name=folder", "data.image_size=32", "data.channels=3")
KEYS = ("fid_fashion_png", "kid", "is_fashion_png", "coverage_min", "precision", "recall")


def _dcgan(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = run_python([sys.executable, "-m", "dcgan", *args], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory, fashion_pngs):
    """(image folder, its feature network, a run scored with it): 32 px RGB, 2 epochs of 512 images.

    Made once for all xdist workers, in a folder they share, under a file lock (xdist_group does not
    keep a module on one worker with this pytest and xdist)."""
    work = tmp_path_factory.getbasetemp().parent / "folder_run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DCGAN_CACHE", str(work / "cache"))
        with FileLock(f"{work}.lock"):
            if not (work / "root.txt").is_file():
                _make_folder_run(work, fashion_pngs[0])
        yield Path((work / "root.txt").read_text()), work / "fashion_png.safetensors", work / "run", _env()


def _make_folder_run(work: Path, root: Path) -> None:
    _dcgan("train-classifier", "--dataset", "folder", "--data-root", str(root), "--image-size", "32",
           "--channels", "3", "--name", "fashion_png", "--epochs", "1", "--batch-size", "64",
           "--out", str(work / "fashion_png.safetensors"), env=_env())  # fmt: skip
    run_train(work / "run", *RGB32, f"data.root={root}", "data.limit=512", "model.width=8", "eval.every_epochs=1",
              "eval.num_samples=500", f"eval.classifier={work / 'fashion_png.safetensors'}")  # fmt: skip
    (work / "root.txt").write_text(str(root))  # last: its presence says the rest is complete


def test_train_classifier_makes_a_network_for_the_folder(folder_run):
    _, network, _, _ = folder_run
    model, record = load_classifier(network)
    assert model.spec.name == "fashion_png" and model.spec.dataset == "folder"
    assert (model.spec.channels, model.spec.image_size, model.spec.classes) == (3, 32, tuple("0123456789"))
    assert record["train_images"] == 1800 and record["test_accuracy"] > 0.5  # a tenth held out; 10 classes
    assert record["command"].startswith(
        "dcgan train-classifier --dataset folder --image-size 32 --channels 3 --name fashion_png --seed 0 --epochs 1"
    )


def test_training_scores_with_eval_classifier_and_names_metrics_for_it(folder_run):
    _, _, run, _ = folder_run
    rows = [row for row in read_metrics(run) if "eval/fid_fashion_png" in row]
    assert [(r["step"], r["epoch"]) for r in rows] == [(32, 1), (64, 2)]
    assert all(r["eval/fid_fashion_png"] > 0 and "eval/fid_mnist" not in r for r in rows)
    best = json.loads((run / "checkpoints" / "best" / "best.json").read_text())
    assert best["network"] == "fashion_png" and best["fid_fashion_png"] == min(r["eval/fid_fashion_png"] for r in rows)


def test_eval_cli_takes_the_runs_network_or_classifier_flag(folder_run, tmp_path):
    """`dcgan eval RUN` reads eval.classifier from the run; a bare generator file takes its data from its
    metadata and the network from --classifier; both print the numbers logged at the last epoch."""
    root, network, run, env = folder_run
    logged = [row for row in read_metrics(run) if "eval/fid_fashion_png" in row][-1]
    printed = json.loads(_dcgan("eval", str(run / "checkpoints" / "step_0000064"), "--num-samples", "500",
                                env=env).stdout)  # fmt: skip
    bare = tmp_path / "g.safetensors"
    shutil.copy(run / "checkpoints" / "step_0000064" / "generator_ema.safetensors", bare)
    direct = evaluate(bare, num_samples=500, data_root=str(root), classifier=str(network))
    for result in (printed, direct):
        assert result["network"] == "fashion_png" and result["data"] == "folder"
        for key in KEYS:
            assert result[key] == pytest.approx(logged[f"eval/{key}"], rel=1e-6, abs=1e-9), key
