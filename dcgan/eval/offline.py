"""Scoring outside training (`dcgan eval`): the metrics of a generator (or of real training images), under any launcher.

A generator is scored against the data it was trained on: its run's data config when it sits in a run
folder, else the dataset its file's metadata names; with that data's feature network (its run's
eval.classifier, else the one shipped for the dataset) unless --classifier names another, or with the
standard Inception-v3 (--network inception). The result names the real images it was compared with and
the sample count: FID depends on both.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dcgan.config import Config, DataConfig, EvalConfig, load_config
from dcgan.data import ensure_dataset, load_dataset
from dcgan.errors import UserError
from dcgan.eval.evaluation import embed_generated, nonstandard_line, score
from dcgan.eval.networks import embed_and_classify, load_classifier, scoring_network
from dcgan.eval.reference import describe_reference, reference_for
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
    source: Path, meta: dict[str, str], data_root: str | None, classifier: str, network: str | None = None,
    inception_weights: str = "",
) -> tuple[DataConfig, EvalConfig]:  # fmt: skip
    """(data, eval settings: network, classifier file, Inception weights) a generator is scored with: its run's,
    where the arguments leave them unset."""
    run = run_config(source)
    if run is not None:
        data, settings = run.data, run.eval
    else:
        data, settings = DataConfig(**generator_data(meta)), EvalConfig()
    if data_root is not None:
        data = dataclasses.replace(data, root=data_root)
    return data, dataclasses.replace(
        settings,
        classifier=classifier or settings.classifier,
        network=network or settings.network,
        inception_weights=inception_weights or settings.inception_weights,
    )


def evaluate(
    source: Path,
    num_samples: int = 10_000,
    seed: int = 0,
    data_root: str | None = None,
    classifier: str = "",
    truncation: float | None = None,
    network: str | None = None,
    inception_weights: str = "",
) -> dict[str, Any] | None:
    """Metrics of a generator file or run folder (under any launcher) in the space of `network` (see
    EvalConfig.network; None: the run's); the result on the main process."""
    from dcgan.runtime import make_accelerator

    accelerator = make_accelerator(Config())
    file = resolve_generator_file(source)
    generator, meta = load_generator_and_metadata(file)
    data, settings = scored_against(source, meta, data_root, classifier, network, inception_weights)
    model, sha256 = _network(data, settings, accelerator.is_main_process)
    started = time.perf_counter()
    features, probs, requested = embed_generated(
        generator.to(accelerator.device), meta.get("pixel_range", "signed"), model.to(accelerator.device),
        num_samples, seed, accelerator, truncation,
    )  # fmt: skip
    if not accelerator.is_main_process:
        return None
    reference = reference_for(data, model, sha256)
    values = score(features, probs, reference, seed, model.name, requested)
    return {
        **values,
        "generator": str(file),
        "data": data.name,
        "reference": describe_reference(data, reference),
        "seed": seed,
        "truncation": truncation,
        "processes": accelerator.num_processes,
        "classifier_sha256": sha256,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _network(data: DataConfig, settings: EvalConfig, say: bool) -> tuple[Any, str]:
    """(network, sha256 of its weights) for `dcgan eval`; says so once (`say`) where Inception's weights are not
    the standard ones."""
    model, sha256 = scoring_network(data, settings.network, settings.classifier, settings.inception_weights)
    if say and not getattr(model, "standard", True):
        print(nonstandard_line(settings.inception_weights, sha256), file=sys.stderr)
    return model, sha256


def evaluate_real(
    num_samples: int = 10_000,
    seed: int = 0,
    dataset: str | None = None,
    data_root: str = "data",
    classifier: str = "",
    network: str = "dataset",
    inception_weights: str = "",
    shape: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The same metrics for `num_samples` random training images: the floor a perfect generator reaches.

    The data is `dataset` (default: the --classifier's, else mnist); a folder takes its image size and
    channels from its network, or from `shape` (image size, channels)."""
    data = DataConfig(name=dataset or "mnist", root=data_root)
    if shape is not None:
        data = dataclasses.replace(data, image_size=shape[0], channels=shape[1])
        data.validate()
    elif data.name in ("folder", "hf") and not classifier:
        raise UserError(
            f"--real --dataset {data.name}: pass --image-size and --channels (or --classifier, which knows them)"
        )
    if classifier:
        spec = load_classifier(Path(classifier))[0].spec
        data = dataclasses.replace(
            data, name=dataset or spec.dataset, image_size=spec.image_size, channels=spec.channels
        )
    settings = EvalConfig(network=network, classifier=classifier, inception_weights=inception_weights)
    model, sha256 = _network(data, settings, True)
    ensure_dataset(data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    images = load_dataset(data).images
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
    features, probs = embed_and_classify(model, images[pick].float().div(255))
    reference = reference_for(data, model, sha256)
    return {**score(features, probs, reference, seed, model.name), "generator": f"{data.name} training split",
            "reference": describe_reference(data, reference), "seed": seed, "classifier_sha256": sha256}  # fmt: skip


def eval_output(source: Path | None, out: Path | None) -> Path:
    """`dcgan eval`'s output file: given, else eval.json in the run or checkpoint folder, else FILE.eval.json
    beside a generator file (eval_real.json for --real)."""
    if out is not None:
        return out
    if source is None:
        return Path("eval_real.json")
    return source / EVAL_FILE if source.is_dir() else source.with_suffix(".eval.json")
