"""Evaluation in training and from the command line: logged rows, the best checkpoint, the reference cache,
offline numbers equal to the logged ones, and 2-process evaluation equal to 1-process."""

import json
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from conftest import read_metrics, run_python, run_train
from dcgan.commands import cli
from dcgan.config import Config, DataConfig
from dcgan.eval import reference
from dcgan.eval.evaluation import BEST, Evaluator, logged_keys
from dcgan.eval.networks import SHIPPED, load_classifier
from dcgan.eval.offline import evaluate, evaluate_real
from dcgan.models.sampling import generate, sample_noise
from dcgan.run import checkpoint
from dcgan.run.layout import RunDir, load_generator
from dcgan.train.loop import Every
from dcgan.train.state import TrainClock

EVAL = ("eval.every_epochs=1", "eval.num_samples=1100")  # 3 chunks of 500: 2 ranks get unequal shares


def _eval_rows(run_dir: Path, network: str = "mnist") -> list[dict]:
    return [row for row in read_metrics(run_dir) if f"eval/fid_{network}" in row]


def test_reference_is_cached_by_data_and_network_checksums(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    model, record = load_classifier()
    data = DataConfig(root=str(data_root))
    first = reference.reference_for(data, model, record["sha256"])
    (cached,) = tmp_path.glob("mnist-test-*-clf-*.safetensors")
    assert record["sha256"][:16] in cached.name

    def must_not_run(*args):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(reference, "compute_reference", must_not_run)
    again = reference.reference_for(data, model, record["sha256"])
    assert torch.equal(first.features, again.features) and first.features.shape == (10_000, 224)
    with pytest.raises(AssertionError, match="recomputed"):  # another network: another cache entry
        reference.reference_for(data, model, "f" * 64)


def test_truncated_noise_is_bounded_and_seeded():
    noise = sample_noise(2000, 100, torch.Generator().manual_seed(0), truncation=0.5)
    assert noise.abs().max() <= 0.5 and noise.std() > 0.2
    again = sample_noise(2000, 100, torch.Generator().manual_seed(0), truncation=0.5)
    assert torch.equal(noise, again)


@pytest.mark.slow
def test_training_logs_eval_keeps_best_and_eval_cli_reproduces_it(tmp_path, data_root):
    """Eval rows at each epoch end and every eval.every_steps, with the training seconds (evaluations left
    out, continued by a resume), the best checkpoint kept, and `dcgan eval` of the checkpoint prints
    exactly the numbers logged for it."""
    on = tmp_path / "on"
    proc = run_train(on, *EVAL, "eval.every_steps=20")
    rows = _eval_rows(on)
    assert [(r["step"], r["epoch"]) for r in rows] == [(20, 0.625), (32, 1), (40, 1.25), (60, 1.875), (64, 2)]
    assert all(r["eval/fid_mnist"] > 0 and r["eval/coverage_min"] >= 0 for r in rows)
    assert proc.stdout.count("eval epoch") == 5 and (on / "loss.png").is_file()  # the loss plot skips eval rows
    clock = [r["eval/train_s"] for r in rows]
    assert clock[0] > 0 and all(a < b for a, b in pairwise(clock))
    best = json.loads((on / "checkpoints" / BEST / "best.json").read_text())
    assert best["fid_mnist"] == min(r["eval/fid_mnist"] for r in rows)
    assert checkpoint.verify(on / "checkpoints" / BEST) is None
    out = tmp_path / "eval.json"
    cli_proc = run_python(
        [sys.executable, "-m", "dcgan", "eval", str(on / "checkpoints" / "step_0000064"), "--num-samples", "1100",
         "--out", str(out)],
    )  # fmt: skip
    assert cli_proc.returncode == 0, cli_proc.stderr[-3000:]
    printed, written = json.loads(cli_proc.stdout), json.loads(out.read_text())
    assert printed == written and written["num_samples"] == 1100
    logged = rows[-1]
    for key in ("fid_mnist", "kid", "is_mnist", "coverage_min", "precision", "recall"):
        assert written[key] == pytest.approx(logged[f"eval/{key}"], rel=1e-9, abs=1e-12), key
    # A resumed job's clock goes on from the checkpoint's.
    run_train(on, *EVAL, "eval.every_steps=0", "train.epochs=3")
    (resumed,) = _eval_rows(on)[len(rows) :]
    assert resumed["step"] == 96 and resumed["eval/train_s"] > clock[-1]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path, data_root):
    """A real 2-rank launch: each rank generates its share, features are gathered; the same checkpoint
    scored by one process gives the same numbers."""
    run_train(tmp_path, *EVAL, "train.max_steps=16", nproc=2)  # 16 steps = 1 epoch at 2 x 16
    (row,) = _eval_rows(tmp_path)
    single = evaluate(tmp_path / "checkpoints" / "step_0000016", num_samples=1100, data_root=str(data_root))
    assert single["processes"] == 1
    for key in ("fid_mnist", "kid", "is_mnist", "coverage_min", "precision", "recall"):
        assert single[key] == pytest.approx(row[f"eval/{key}"], rel=1e-6, abs=1e-9), key


def test_evaluation_leaves_the_training_random_streams_alone(data_root):
    """Evaluation draws from its own seeded streams, so turning it on cannot change a training run."""
    from accelerate import Accelerator

    from dcgan.config import ModelConfig
    from dcgan.eval.evaluation import embed_generated
    from dcgan.models import build_models

    generator = build_models(ModelConfig())[0]
    model, _ = load_classifier()
    before = torch.get_rng_state()
    embed_generated(generator, "signed", model, 600, 0, Accelerator(cpu=True))
    assert torch.equal(torch.get_rng_state(), before)


def _fid(value: float) -> dict:
    return {"fid_mnist": value, "network": "mnist"}


def test_best_checkpoint_survives_rotation_and_only_improves(tmp_path):
    root = tmp_path / "checkpoints"
    weights = {"w": torch.zeros(2)}

    def save(step: int):
        checkpoint.save_checkpoint(root, step, weights, weights, {"step": step}, {"format": checkpoint.FORMAT}, 1)

    cfg = Config(output_dir=str(tmp_path))
    cfg.eval.every_epochs = 0  # no network needed to keep checkpoints
    evaluator = Evaluator(cfg.data, cfg.eval, cfg.seed, accelerator=None, run=RunDir(tmp_path))
    save(10)
    assert evaluator._keep_best(_fid(5.0), step=10, epoch=1)
    save(20)
    assert not evaluator._keep_best(_fid(6.0), step=20, epoch=2)  # worse: the kept one stays
    save(30)  # keep_last=1: step 10 is long gone
    assert [p.name for p in checkpoint.list_checkpoints(root)] == ["step_0000030"]
    assert json.loads((root / BEST / "best.json").read_text())["step"] == 10
    assert checkpoint.verify(root / BEST) is None
    assert not evaluator._keep_best(_fid(float("nan")), step=30, epoch=3)  # a diverged G is never best
    assert evaluator._keep_best(_fid(4.0), step=30, epoch=3)
    assert json.loads((root / BEST / "best.json").read_text())["step"] == 30
    assert not list(root.glob(".tmp-*"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "/nonexistent/run"], "/nonexistent/run does not exist"),
        (["eval"], "pass a run folder or generator file, or --real"),
        (["eval", "x", "--real"], "pass a run folder or generator file, or --real"),
        (["eval", "--real", "--num-samples", "10"], "--num-samples must be >= 100"),
        (["sample", "x", "--out", "y.png", "--truncation", "0"], "--truncation must be > 0"),
    ],
)
def test_eval_and_sample_user_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dcgan: error: ") and message in err[0]


def test_truncation_changes_samples_deterministically(tmp_path):
    from dcgan.config import ModelConfig
    from dcgan.models import build_models
    from dcgan.models.file import export_generator

    torch.manual_seed(0)
    g, _ = build_models(ModelConfig())
    export_generator(tmp_path / "g.safetensors", g.eval(), Config(), step=0)
    loaded, pixel_range = load_generator(tmp_path / "g.safetensors")
    a = generate(loaded, 4, 0, pixel_range, truncation=0.5)
    assert torch.equal(a, generate(loaded, 4, 0, pixel_range, truncation=0.5))
    assert not torch.equal(a, generate(loaded, 4, 0, pixel_range))


def test_a_diverged_generator_scores_nan_instead_of_crashing():
    from dcgan.eval.evaluation import score

    values = score(torch.full((200, 224), float("nan")), torch.full((200, 10), 0.1), reference=None)
    assert all(values[k] != values[k] for k in ("fid_mnist", "kid", "precision", "coverage_min"))  # NaN


@pytest.mark.slow
def test_fashion_mnist_is_scored_with_its_own_network(tmp_path, data_root):
    """Training and `dcgan eval` score Fashion-MNIST in its network's space, against its test split, under
    metric names that say so; never with the MNIST network or statistics."""
    run_train(tmp_path, "data.name=fashion_mnist", "train.max_steps=32", "eval.every_epochs=1", "eval.num_samples=500")
    (row,) = _eval_rows(tmp_path, "fashion_mnist")
    assert not any("eval/fid_mnist" in r for r in read_metrics(tmp_path))
    proc = run_python(
        [sys.executable, "-m", "dcgan", "eval", str(tmp_path / "checkpoints" / "step_0000032"), "--num-samples", "500"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["classifier_sha256"] == SHIPPED["fashion_mnist"][1] and result["data"] == "fashion_mnist"
    for key in logged_keys("fashion_mnist"):
        assert result[key] == pytest.approx(row[f"eval/{key}"], rel=1e-9, abs=1e-12), key


def test_real_fashion_mnist_is_the_floor(data_root):
    real = evaluate_real(num_samples=1000, dataset="fashion_mnist", data_root=str(data_root))
    assert real["network"] == "fashion_mnist" and real["generator"] == "fashion_mnist training split"
    assert real["fid_fashion_mnist"] < 5 and real["is_fashion_mnist"] > 6 and real["coverage_min"] > 0.7


def test_the_training_clock_leaves_paused_time_out_and_starts_from_the_checkpoint():
    clock = TrainClock()
    clock.before = 100.0  # a resumed job: the checkpoint's seconds
    assert clock.seconds() == 100.0  # not started: stands still
    clock.start()
    with clock.pause():
        time.sleep(0.2)
    assert 100.0 <= clock.seconds() < 100.1
    time.sleep(0.05)
    assert clock.seconds() >= 100.05


def test_the_loops_schedule_follows_every_steps_every_epochs_and_the_last_epoch():
    """The training loop's evaluation (train.epochs=5, eval.every_epochs=2, eval.every_steps=300) and log schedules."""
    evaluate = Every("evaluate", lambda: None, steps=300, epochs=2, also_epoch=5)
    due = [(100, 0.5), (300, 1.5), (200, 1), (400, 2), (500, 2.5), (1000, 5)]
    assert [evaluate.due(step, epoch) for step, epoch in due] == [False, True, False, True, False, True]
    assert not Every("off", lambda: None).due(300, 1)
    log = Every("log", lambda: None, steps=8, also_step=20)  # every 8 steps and at the last one
    assert [s for s in range(1, 21) if log.due_by_step(s)] == [8, 16, 20]
