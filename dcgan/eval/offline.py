"""Scoring outside training (`dcgan eval`): the metrics of a generator (or of real training images), under any launcher.

A generator is scored against the data it was trained on: its run's data config when it sits in a run
folder, else the dataset its file's metadata names; with that data's feature network (its run's
eval.classifier, else the one shipped for the dataset) unless --classifier names another.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from dcgan.config import Config, DataConfig, load_config
from dcgan.data import ensure_dataset, load_dataset
from dcgan.eval.evaluation import embed_generated, score
from dcgan.eval.networks import embed_and_classify, load_classifier, network_for
from dcgan.eval.reference import reference_for
from dcgan.models.file import generator_data
from dcgan.run.layout import EVAL_FILE, RunDir, load_generator_and_metadata, resolve_generator_file


def run_config(source: Path) -> Config | None:
    """The config of the run a run folder, checkpoint folder or generator file belongs to, if it has one."""
    folder = source if source.is_dir() else source.parent
    for candidate in (RunDir(folder), RunDir(folder.parent.parent)):  # a run folder, or a checkpoint inside one
        if candidate.config.is_file():
            return load_config(candidate.config)
    return None


def scored_against(
    source: Path, meta: dict[str, str], data_root: str | None, classifier: str
) -> tuple[DataConfig, str]:
    """(data, feature network file or "" for the shipped one) a generator is scored with."""
    run = run_config(source)
    if run is not None:
        data, run_classifier = run.data, run.eval.classifier
    else:
        data, run_classifier = DataConfig(**generator_data(meta)), ""
    if data_root is not None:
        data = dataclasses.replace(data, root=data_root)
    return data, classifier or run_classifier


def evaluate(
    source: Path,
    num_samples: int = 10_000,
    seed: int = 0,
    data_root: str | None = None,
    classifier: str = "",
    truncation: float | None = None,
) -> dict[str, Any] | None:
    """Metrics of a generator file or run folder (under any launcher); the result on the main process."""
    from dcgan.runtime import make_accelerator

    accelerator = make_accelerator(Config())
    file = resolve_generator_file(source)
    generator, meta = load_generator_and_metadata(file)
    data, classifier = scored_against(source, meta, data_root, classifier)
    network, record = network_for(data, classifier)
    started = time.perf_counter()
    features, probs, requested = embed_generated(
        generator.to(accelerator.device), meta.get("pixel_range", "signed"), network.to(accelerator.device),
        num_samples, seed, accelerator, truncation,
    )  # fmt: skip
    if not accelerator.is_main_process:
        return None
    reference = reference_for(data, network, record["sha256"])
    values = score(features, probs, reference, seed, network.spec.name, requested)
    return {
        **values,
        "generator": str(file),
        "data": data.name,
        "seed": seed,
        "truncation": truncation,
        "processes": accelerator.num_processes,
        "classifier_sha256": record["sha256"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def evaluate_real(
    num_samples: int = 10_000, seed: int = 0, dataset: str | None = None, data_root: str = "data", classifier: str = ""
) -> dict[str, Any]:
    """The same metrics for `num_samples` random training images: the floor a perfect generator reaches.

    The data is `dataset` (default: the --classifier's, else mnist); a folder takes its image size and
    channels from its network."""
    data = DataConfig(name=dataset or "mnist", root=data_root)
    if classifier:
        spec = load_classifier(Path(classifier))[0].spec
        data = dataclasses.replace(
            data, name=dataset or spec.dataset, image_size=spec.image_size, channels=spec.channels
        )
    network, record = network_for(data, classifier)
    ensure_dataset(data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network.to(device)
    images = load_dataset(data).images
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
    features, probs = embed_and_classify(network, images[pick].float().div(255))
    reference = reference_for(data, network, record["sha256"])
    return {**score(features, probs, reference, seed, network.spec.name), "generator": f"{data.name} training split",
            "seed": seed, "classifier_sha256": record["sha256"]}  # fmt: skip


def eval_output(source: Path | None, out: Path | None) -> Path:
    """`dcgan eval`'s output file: given, else eval.json in the run or checkpoint folder, else FILE.eval.json
    beside a generator file (eval_real.json for --real)."""
    if out is not None:
        return out
    if source is None:
        return Path("eval_real.json")
    return source / EVAL_FILE if source.is_dir() else source.with_suffix(".eval.json")
