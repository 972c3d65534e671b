"""Sample quality of a generator: N images made across ranks, embedded, gathered and scored on the main process.

Sample i always comes from the same noise (chunk i // CHUNK of a seeded stream), whichever rank makes it,
so 1 and N processes score the same images. Used at epoch ends during training (`Evaluator`, called from
the trainer) and by `dcgan eval` (dcgan/eval/offline.py). The feature network is the data's
(dcgan/eval/networks.py), or the standard Inception-v3 (dcgan/eval/inception.py), and the metrics carry its
name: fid_mnist, fid_fashion_mnist, ..., fid_inception.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from torch import nn

from dcgan.config import DataConfig, EvalConfig
from dcgan.data import from_model_range
from dcgan.distributed import agree
from dcgan.eval.inception import KID_SUBSETS
from dcgan.eval.inception import NAME as INCEPTION
from dcgan.eval.metrics import (
    class_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_and_covariance,
    precision_recall,
)
from dcgan.eval.networks import embed_and_classify, scoring_network
from dcgan.eval.reference import Reference, ensure_reference_data, reference_for
from dcgan.models.sampling import sample_noise
from dcgan.rng import derive_seed
from dcgan.run import checkpoint
from dcgan.run.layout import RunDir

CHUNK = 500  # images per generator call; also the unit of work handed to ranks
BEST = "best"  # checkpoints/best/: a copy of the checkpoint with the lowest fid so far, and best.json


def logged_keys(network: str) -> tuple[str, ...]:
    """The metrics logged (as eval/<key>) and printed, named for the feature network where they depend on it.
    Inception has no classes here: FID and KID only."""
    if network == INCEPTION:
        return (f"fid_{network}", f"kid_{network}")
    return (f"fid_{network}", "kid", f"is_{network}", "coverage_min", "precision", "recall")


def score(
    features: torch.Tensor,
    probs: torch.Tensor,
    reference: Reference,
    seed: int = 0,
    network: str = "mnist",
    requested: torch.Tensor | None = None,
) -> dict[str, Any]:
    """All metrics of generated features/probabilities against the reference (see dcgan/eval/metrics.py), in the
    space of the feature network called `network`; with `requested`, the classes a conditional G was asked
    for, also class_accuracy: the share of images the network assigns to the class asked for. A network
    without classes (Inception, `probs` of width 0) gives FID and KID alone, KID over KID_SUBSETS subsets.

    Non-finite features (a diverged G) give NaN metrics instead of an error in the eigen-decomposition.
    """
    accuracy = {} if requested is None else {"class_accuracy": class_accuracy(probs, requested)}
    kid_key = logged_keys(network)[1]
    if not torch.isfinite(features).all():
        nan = dict.fromkeys((*logged_keys(network), f"{kid_key}_std"), math.nan)
        return nan | accuracy | {"coverage": [], "num_samples": len(features), "network": network}
    reference = reference.to(features.device)
    mu, sigma = mean_and_covariance(features)
    has_classes = probs.shape[1] > 0
    subsets = {} if has_classes else {"subsets": KID_SUBSETS}
    kid, kid_std = kernel_inception_distance(reference.features, features, seed=seed, **subsets)
    values = {f"fid_{network}": frechet_distance(mu, sigma, reference.mu, reference.sigma), kid_key: kid,
              f"{kid_key}_std": kid_std}  # fmt: skip
    if not has_classes:
        return values | accuracy | {"num_samples": len(features), "network": network}
    precision, recall = precision_recall(reference.features, features, reference.radii)
    coverage = class_coverage(probs, reference.shares)
    return {
        **values,
        f"is_{network}": inception_score(probs),
        "coverage_min": coverage.min().item(),
        "precision": precision,
        "recall": recall,
        **accuracy,
        "coverage": [round(c, 4) for c in coverage.tolist()],
        "num_samples": len(features),
        "network": network,
    }


def class_accuracy(probs: torch.Tensor, requested: torch.Tensor) -> float:
    """Share of generated images whose most likely class is the one G was asked for (1 / classes = chance)."""
    return (probs.argmax(dim=1) == requested.to(probs.device)).float().mean().item()


@torch.no_grad()
def embed_generated(
    generator: nn.Module,
    pixel_range: str,
    network: nn.Module,
    num_samples: int,
    seed: int,
    accelerator: Accelerator,
    truncation: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(features, class probabilities, requested classes or None) of `num_samples` generated images, on every
    rank, in sample order. A conditional G draws uniform classes, from a stream of their own; they are
    returned where the network has as many classes as G. `network`: see embed_and_classify.

    A collective: rank r makes the r-th contiguous run of chunks, so the gather returns sample order.
    Ranks with fewer real chunks, and the last chunk, pad with zeros (gather needs equal sizes); the padding is
    cut off.
    """
    device, ranks = accelerator.device, accelerator.num_processes
    num_classes = getattr(generator, "num_classes", 0)
    dim = network.feature_dim
    width = dim + len(network.classes) + 1  # the last column: the class asked for
    chunks = math.ceil(num_samples / CHUNK)
    per_rank = math.ceil(chunks / ranks)
    rows = []
    for chunk in range(accelerator.process_index * per_rank, (accelerator.process_index + 1) * per_rank):
        if chunk >= chunks:
            rows.append(torch.zeros(CHUNK, width, device=device))
            continue
        stream = torch.Generator().manual_seed(derive_seed(seed, "eval", chunk))
        noise = sample_noise(CHUNK, generator.z_dim, stream, truncation).to(device)
        labels = torch.zeros(CHUNK, dtype=torch.long, device=device)
        inputs = (noise,)
        if num_classes:
            classes = torch.Generator().manual_seed(derive_seed(seed, "eval-classes", chunk))
            labels = torch.randint(num_classes, (CHUNK,), generator=classes).to(device)
            inputs = (noise, labels)
        # The last chunk makes only the images asked for (the noise stream stays the chunk's): Inception costs
        # ~0.3 s per image on a CPU core.
        needed = min(CHUNK, num_samples - chunk * CHUNK)
        images = from_model_range(generator(*(x[:needed] for x in inputs)).float(), pixel_range)
        row = torch.cat([*embed_and_classify(network, images), labels[:needed, None].float()], dim=1)
        rows.append(torch.cat([row, row.new_zeros(CHUNK - needed, width)]))
    local = torch.cat(rows)
    everything = accelerator.gather(local)[:num_samples] if ranks > 1 else local[:num_samples]
    # class_accuracy only means something where the network tells the generator's classes apart
    requested = everything[:, -1].long() if num_classes and num_classes == len(network.classes) else None
    return everything[:, :dim], everything[:, dim:-1], requested


def _rank0_generator(generator: nn.Module, accelerator: Accelerator) -> nn.Module:
    """An eval-mode copy of G with rank 0's BatchNorm running statistics (ranks keep their own in training,
    see dcgan/runtime.py), so the score is that of the generator the checkpoint holds."""
    frozen = copy.deepcopy(generator).eval()
    if accelerator.num_processes > 1:
        for buffer in frozen.buffers():
            buffer.copy_(broadcast(buffer, from_process=0))
    return frozen


class Evaluator:
    """Scores G when the training loop asks (its `Every("evaluate")`: every `eval.every_epochs` epochs and after the
    last one, every `eval.every_steps` steps); keeps the best checkpoint by fid.

    Without a feature network for the data (a folder, no eval.classifier, eval.network=dataset) evaluation is
    off, and the main process says so once. Inception weights that are missing stop the run at start.
    """

    def __init__(self, data: DataConfig, settings: EvalConfig, seed: int, accelerator: Accelerator, run: RunDir):
        self.data, self.settings, self.seed = data, settings, seed
        self.accelerator, self.run = accelerator, run
        self.network: nn.Module | None = None
        self.reference: Reference | None = None
        if not (settings.every_epochs or settings.every_steps):
            return
        # A missing, damaged or mismatched network stops the run now, not after an epoch, on every rank at once
        # (each machine reads its own copy of the file).
        chosen = agree(
            accelerator,
            lambda: scoring_network(data, settings.network, settings.classifier, settings.inception_weights, False),
        )
        if chosen is not None:
            self.network, self.network_sha256 = chosen[0].to(accelerator.device), chosen[1]
            if accelerator.is_main_process and not getattr(self.network, "standard", True):
                print(nonstandard_line(settings.inception_weights, self.network_sha256), flush=True)
            self.reference = self._reference()
        elif accelerator.is_main_process:
            print(
                f"eval: off, no feature network ships for data.name={data.name}: set eval.network=inception "
                f"(the standard Inception FID), or make one from labelled subfolders with dcgan train-classifier "
                f"--dataset {data.name} and set eval.classifier=FILE (eval.every_epochs=0 eval.every_steps=0 "
                "silences this)",
                flush=True,
            )

    def _reference(self) -> Reference:
        """The real images' statistics, read or computed at start on every rank: computed by the main process alone
        at the first evaluation, they would leave the other ranks waiting at their next collective, past
        fault.timeout_s where they take long (10k Inception embeddings: most of an hour on one CPU core). The
        main process fetches the data first (a download by every rank would race); the cache write is atomic."""
        acc = self.accelerator
        agree(acc, lambda: ensure_reference_data(self.data) if acc.is_main_process else None)
        return agree(acc, lambda: reference_for(self.data, self.network, self.network_sha256))

    @property
    def enabled(self) -> bool:
        """Whether the run is scored at all: a feature network exists for its data."""
        return self.network is not None

    def evaluate(self, generator: nn.Module, step: int, epoch: float, train_s: float) -> tuple[dict, str] | None:
        """A collective (every rank calls it); on the main process, which also keeps the best checkpoint, the row
        to log and its line. `train_s`: the run's training seconds so far (dcgan/train/state.py's TrainClock),
        logged as eval/train_s."""
        acc = self.accelerator
        started = time.perf_counter()
        # The same noise every epoch (epochs differ by G alone), and the numbers `dcgan eval --seed SEED`
        # prints for the checkpoint of this step.
        seed = self.seed
        features, probs, requested = embed_generated(
            _rank0_generator(generator, acc),
            self.data.pixel_range,
            self.network,
            self.settings.num_samples,
            seed,
            acc,
        )
        if not acc.is_main_process:
            return None
        network = self.network.name
        values = score(features, probs, self.reference, seed, network, requested)
        seconds = time.perf_counter() - started
        keys = logged_keys(network) + (("class_accuracy",) if requested is not None else ())
        logged = {f"eval/{k}": values[k] for k in keys} | {"eval/seconds": seconds, "eval/train_s": train_s}
        logged["epoch"] = int(epoch) if float(epoch).is_integer() else round(epoch, 4)
        best = self._keep_best(values, step, logged["epoch"])
        shown = " ".join(f"{k} {values[k]:.4g}" for k in keys)
        when = f"epoch {logged['epoch']} step {step}"
        return logged, f"eval {when}: {shown} ({seconds:.1f} s){' best' if best else ''}"

    def _keep_best(self, values: dict[str, Any], step: int, epoch: float) -> bool:
        """Copy this step's checkpoint to checkpoints/best/ if its fid beats the kept one's."""
        root = self.run.checkpoints
        record = root / BEST / "best.json"
        if not values[f"fid_{values['network']}"] < _kept_fid(record, values["network"]):  # also false for NaN
            return False
        source = root / checkpoint.checkpoint_name(step)
        if not source.is_dir():  # the save was skipped (non-finite losses): nothing to keep
            return False
        summary = json.dumps({"step": step, "epoch": epoch, **values}, indent=1)
        checkpoint.snapshot(source, root / BEST, {"best.json": summary})
        return True


def nonstandard_line(configured: str, sha256: str) -> str:
    """The warning for Inception weights other than the 2015-12-05 ones papers use."""
    return (
        f"eval: the Inception weights {configured or 'in the torch hub cache'} (sha256 {sha256[:12]}...) are not the "
        "standard 2015-12-05 ones: fid_inception compares only with numbers made with this same file"
    )


def _kept_fid(record: Path, network: str) -> float:
    """fid of the kept best checkpoint; infinity if there is none, its record is unreadable or it was scored by
    another network (eval.network changed on resume).

    Records written before metrics carried their network's name are MNIST's."""
    try:
        kept = json.loads(record.read_text())
        return float(kept[f"fid_{network}"]) if kept.get("network", "mnist") == network else math.inf
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return math.inf
