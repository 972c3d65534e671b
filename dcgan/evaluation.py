"""Sample quality of a generator: N images made across ranks, embedded, gathered and scored on the main process.

Sample i always comes from the same noise (chunk i // CHUNK of a seeded stream), whichever rank makes it,
so 1 and N processes score the same images. Used at epoch ends during training (`Evaluator`, called from
the trainer) and by `dcgan eval` (`evaluate`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from torch import nn

from dcgan import checkpoint
from dcgan.classifier import FEATURE_DIM, MNISTClassifier, embed_and_classify, load_classifier
from dcgan.config import Config, DataConfig, load_config
from dcgan.data import ensure_dataset, from_model_range, load_images
from dcgan.metrics import (
    class_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_and_covariance,
    precision_recall,
)
from dcgan.reference import Reference, reference_of_test_split
from dcgan.rng import derive_seed
from dcgan.sampling import sample_noise

if TYPE_CHECKING:
    from dcgan.tracking import RunLog

CHUNK = 500  # images per generator call; also the unit of work handed to ranks
BEST = "best"  # checkpoints/best/: a copy of the checkpoint with the lowest fid_mnist so far, and best.json
LOGGED = ("fid_mnist", "kid", "is_mnist", "coverage_min", "precision", "recall")


def score(features: torch.Tensor, probs: torch.Tensor, reference: Reference, seed: int = 0) -> dict[str, Any]:
    """All metrics of generated features/probabilities against the reference (see dcgan/metrics.py).

    Non-finite features (a diverged G) give NaN metrics instead of an error in the eigen-decomposition.
    """
    if not torch.isfinite(features).all():
        return dict.fromkeys((*LOGGED, "kid_std"), math.nan) | {"coverage": [], "num_samples": len(features)}
    reference = reference.to(features.device)
    mu, sigma = mean_and_covariance(features)
    kid, kid_std = kernel_inception_distance(reference.features, features, seed=seed)
    precision, recall = precision_recall(reference.features, features, reference.radii)
    coverage = class_coverage(probs, reference.shares)
    return {
        "fid_mnist": frechet_distance(mu, sigma, reference.mu, reference.sigma),
        "kid": kid,
        "kid_std": kid_std,
        "is_mnist": inception_score(probs),
        "coverage_min": coverage.min().item(),
        "precision": precision,
        "recall": recall,
        "coverage": [round(c, 4) for c in coverage.tolist()],
        "num_samples": len(features),
    }


@torch.no_grad()
def embed_generated(
    generator: nn.Module,
    pixel_range: str,
    classifier: MNISTClassifier,
    num_samples: int,
    seed: int,
    accelerator: Accelerator,
    truncation: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, class probabilities) of `num_samples` generated images, on every rank, in sample order.

    A collective: rank r makes the r-th contiguous run of chunks, so the gather returns sample order.
    Ranks with fewer real chunks pad with zeros (gather needs equal sizes); the padding is cut off.
    """
    device, ranks = accelerator.device, accelerator.num_processes
    chunks = math.ceil(num_samples / CHUNK)
    per_rank = math.ceil(chunks / ranks)
    rows = []
    for chunk in range(accelerator.process_index * per_rank, (accelerator.process_index + 1) * per_rank):
        if chunk >= chunks:
            rows.append(torch.zeros(CHUNK, FEATURE_DIM + 10, device=device))
            continue
        stream = torch.Generator().manual_seed(derive_seed(seed, "eval", chunk))
        noise = sample_noise(CHUNK, generator.z_dim, stream, truncation).to(device)
        images = from_model_range(generator(noise).float(), pixel_range)
        rows.append(torch.cat(embed_and_classify(classifier, images), dim=1))
    local = torch.cat(rows)
    everything = accelerator.gather(local)[:num_samples] if ranks > 1 else local[:num_samples]
    return everything[:, :FEATURE_DIM], everything[:, FEATURE_DIM:]


def _rank0_generator(generator: nn.Module, accelerator: Accelerator) -> nn.Module:
    """An eval-mode copy of G with rank 0's BatchNorm running statistics (ranks keep their own in training,
    see dcgan/distributed.py), so the score is that of the generator the checkpoint holds."""
    frozen = copy.deepcopy(generator).eval()
    if accelerator.num_processes > 1:
        for buffer in frozen.buffers():
            buffer.copy_(broadcast(buffer, from_process=0))
    return frozen


class Evaluator:
    """Scores G every `eval.every_epochs` epochs and after the last one; keeps the best checkpoint by fid_mnist."""

    def __init__(self, cfg: Config, accelerator: Accelerator, run_dir: Path):
        self.cfg, self.accelerator, self.run_dir = cfg, accelerator, run_dir
        self.classifier: MNISTClassifier | None = None
        self.reference: Reference | None = None
        self.last: dict[str, float] = {}  # the newest evaluation's logged values (main process)
        if cfg.eval.every_epochs:  # a missing or damaged network stops the run now, not after an epoch
            classifier, meta = load_classifier()
            self.classifier, self.classifier_sha256 = classifier.to(accelerator.device), meta["sha256"]

    def due(self, epoch: int) -> bool:
        every = self.cfg.eval.every_epochs
        return every > 0 and (epoch % every == 0 or epoch == self.cfg.train.epochs)

    def epoch_end(self, generator: nn.Module, step: int, epoch: int, log: RunLog) -> None:
        """A collective at the end of `epoch` (every rank calls it); the main process logs and keeps the best."""
        if not self.due(epoch):
            return
        acc, cfg = self.accelerator, self.cfg
        started = time.perf_counter()
        # The same noise every epoch (epochs differ by G alone), and the numbers `dcgan eval --seed SEED`
        # prints for the checkpoint of this step.
        seed = cfg.seed
        features, probs = embed_generated(
            _rank0_generator(generator, acc), cfg.data.pixel_range, self.classifier, cfg.eval.num_samples, seed, acc
        )
        if not acc.is_main_process:
            return
        if self.reference is None:
            self.reference = reference_of_test_split(
                DataConfig(root=cfg.data.root), self.classifier, self.classifier_sha256
            )
        values = score(features, probs, self.reference, seed)
        seconds = time.perf_counter() - started
        logged = {f"eval/{k}": values[k] for k in LOGGED} | {"eval/seconds": seconds, "epoch": epoch}
        self.last = {**logged, "step": step}
        best = self._keep_best(values, step, epoch)
        shown = " ".join(f"{k} {values[k]:.4g}" for k in LOGGED)
        log.record(logged, step, f"eval epoch {epoch} step {step}: {shown} ({seconds:.1f} s){' best' if best else ''}")

    def _keep_best(self, values: dict[str, Any], step: int, epoch: int) -> bool:
        """Copy this step's checkpoint to checkpoints/best/ if its fid_mnist beats the kept one's."""
        root = self.run_dir / "checkpoints"
        record = root / BEST / "best.json"
        if not values["fid_mnist"] < _kept_fid(record):  # also false for NaN
            return False
        source = root / checkpoint.checkpoint_name(step)
        if not source.is_dir():  # the save was skipped (non-finite losses): nothing to keep
            return False
        summary = json.dumps({"step": step, "epoch": epoch, **values}, indent=1)
        checkpoint.snapshot(source, root / BEST, {"best.json": summary})
        return True


def _kept_fid(record: Path) -> float:
    """fid_mnist of the kept best checkpoint; infinity if there is none (or its record is unreadable)."""
    try:
        return float(json.loads(record.read_text())["fid_mnist"])
    except (OSError, ValueError, KeyError, TypeError):
        return math.inf


def evaluate(
    source: Path,
    num_samples: int = 10_000,
    seed: int = 0,
    data_root: str = "data",
    truncation: float | None = None,
) -> dict[str, Any] | None:
    """`dcgan eval`: metrics of a generator file or run folder (under any launcher); the result on the main process."""
    from dcgan.distributed import make_accelerator
    from dcgan.sampling import load_generator, resolve_generator_file

    accelerator = make_accelerator(Config())
    file = resolve_generator_file(source)
    generator, pixel_range = load_generator(file)
    classifier, meta = load_classifier()
    started = time.perf_counter()
    features, probs = embed_generated(
        generator.to(accelerator.device), pixel_range, classifier.to(accelerator.device),
        num_samples, seed, accelerator, truncation,
    )  # fmt: skip
    if not accelerator.is_main_process:
        return None
    reference = reference_of_test_split(DataConfig(root=data_root), classifier, meta["sha256"])
    values = score(features, probs, reference, seed)
    return {
        **values,
        "generator": str(file),
        "seed": seed,
        "truncation": truncation,
        "processes": accelerator.num_processes,
        "classifier_sha256": meta["sha256"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def evaluate_real(num_samples: int = 10_000, seed: int = 0, data_root: str = "data") -> dict[str, Any]:
    """The same metrics for `num_samples` random MNIST training images: the floor a perfect generator reaches."""
    data = DataConfig(root=data_root)
    ensure_dataset(data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classifier, meta = load_classifier()
    classifier.to(device)
    images = load_images(data, train=True)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
    features, probs = embed_and_classify(classifier, images[pick].float().div(255).unsqueeze(1))
    reference = reference_of_test_split(data, classifier, meta["sha256"])
    return {**score(features, probs, reference, seed), "generator": "MNIST training split", "seed": seed,
            "classifier_sha256": meta["sha256"]}  # fmt: skip


def eval_defaults(source: Path | None, data_root: str | None, out: Path | None) -> tuple[str, Path]:
    """`dcgan eval`'s data root (given, else the run's data.root, else data) and output file (given, else
    eval.json in the run or checkpoint folder, else FILE.eval.json beside a generator file)."""
    if data_root is None:
        data_root = "data"
        if source is not None:
            folder = source if source.is_dir() else source.parent
            for candidate in (folder, folder.parent.parent):  # a run folder, or a checkpoint inside one
                if (candidate / "config.yaml").is_file():
                    data_root = str(load_config(candidate / "config.yaml").data.root)
                    break
    if out is None:
        if source is None:
            out = Path("eval_real.json")
        else:
            out = source / "eval.json" if source.is_dir() else source.with_suffix(".eval.json")
    return data_root, out
