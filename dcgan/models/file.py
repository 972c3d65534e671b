"""The shareable generator file: `generator.safetensors` holds G's weights and BatchNorm buffers; its metadata
holds the model config, the data it was trained on (dataset, image size, channels), the class names of a
conditional G and the pixel range, so that G is rebuilt from the file alone, with no training code, config or
pickle. (Finding the file in a run, checkpoint or exported folder: dcgan/run/layout.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from dcgan.config import Config, ModelConfig, to_dict
from dcgan.errors import UserError
from dcgan.io.files import read_weights, save_weights
from dcgan.models import build_generator

GENERATOR_FORMAT = "dcgan-generator/1"
GENERATOR_DATA_KEYS = ("name", "image_size", "channels", "limit")  # what G learnt; older files: all of MNIST


def generator_metadata(cfg: Config, step: int, weights: str = "last", classes: tuple[str, ...] = ()) -> dict[str, str]:
    """`weights`: "last" (the training iterate) or "ema" (the moving average, dcgan/train/ema.py); `classes`:
    the data's class names, which a conditional G's class indices stand for."""
    return {
        "format": GENERATOR_FORMAT,
        "model": json.dumps(to_dict(cfg.model)),
        "data": json.dumps({k: getattr(cfg.data, k) for k in GENERATOR_DATA_KEYS}),
        "classes": json.dumps(list(classes)),
        "pixel_range": cfg.data.pixel_range,
        "step": str(step),
        "weights": weights,
    }


def export_generator(
    path: Path, generator: nn.Module, cfg: Config, step: int, weights: str = "last", classes: tuple[str, ...] = ()
) -> None:
    save_weights(path, generator.state_dict(), generator_metadata(cfg, step, weights, classes))


def generator_data(meta: dict[str, str]) -> dict:
    """The data a generator file's G was trained on (dataset name, image size, channels, limit)."""
    return {"name": "mnist", "image_size": 28, "channels": 1, "limit": 0} | json.loads(meta.get("data", "{}"))


def class_names(generator: nn.Module, meta: dict[str, str]) -> tuple[str, ...]:
    """The class names a conditional G's indices stand for ((), for an unconditional G)."""
    return _stored_classes(meta) if getattr(generator, "num_classes", 0) else ()


def _stored_classes(meta: dict[str, str]) -> tuple[str, ...]:
    """The class names a generator file records (none before conditional models existed)."""
    return tuple(json.loads(meta.get("classes", "[]")))


def read_generator(file: Path, formats: tuple[str, ...] = (GENERATOR_FORMAT,)) -> tuple[nn.Module, dict[str, str]]:
    """(generator in eval mode on CPU, the file's metadata) from a generator file whose metadata format is one of
    `formats` (a checkpoint's generator.safetensors carries the same model metadata under its own format)."""
    tensors, meta = read_weights(file)
    if meta.get("format") not in formats or "model" not in meta:
        raise UserError(f"{file} is not a dcgan generator (no '{GENERATOR_FORMAT}' metadata)")
    try:
        model_cfg = ModelConfig(**json.loads(meta["model"]))
        data = generator_data(meta)
        generator = build_generator(model_cfg, data["image_size"], data["channels"], len(_stored_classes(meta)))
        generator.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{file} does not match the generator its metadata describes ({e})") from None
    return generator.eval(), meta
