"""data.name=hf: a Hugging Face `datasets` dataset the test builds and saves (save_to_disk, parquet, arrow),
read into the same cache as a folder, its ClassLabel names as the classes; a Hub name offline, a missing
column, a bad row: one line each."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import read_metrics, run_python, run_train, train_command
from dcgan.config import DataConfig
from dcgan.data import building, decoding, ensure_dataset, load_dataset
from dcgan.errors import UserError

datasets = pytest.importorskip("datasets", reason="the hf extra: pip install -e '.[dev]' installs it")

CLASSES = ["circle", "square", "stripes"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))


def _pictures(count: int) -> tuple[list[Image.Image], list[int]]:
    """RGBA, palette and RGB pictures of three kinds, 20x30 (the decoder's modes, not only RGB)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(count):
        pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        image = (image.convert("RGBA"), image.convert("P"), image)[i % 3]
        images.append(image)
        labels.append(i % 3)
    return images, labels


def _dataset(count: int = 12):
    images, labels = _pictures(count)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features), images, labels


def _expected(images: list[Image.Image], size: int = 16) -> np.ndarray:
    """What a folder of the same pictures decodes to: the same decoder, straight from the images."""
    from dcgan.data.decoding import decode

    out = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        with Image.open(buffer) as reopened:
            out.append(decode(reopened, size, 3, "white"))
    return np.stack(out)


@pytest.mark.parametrize("form", ["save_to_disk", "dataset_dict", "parquet", "arrow"])
def test_a_saved_dataset_loads_like_a_folder_of_its_images_with_its_class_names(tmp_path, cache, form, capsys):
    dataset, images, labels = _dataset()
    if form == "save_to_disk":
        root = tmp_path / "saved"
        dataset.save_to_disk(str(root))
    elif form == "dataset_dict":
        root = tmp_path / "dict"
        datasets.DatasetDict({"train": dataset, "test": dataset.select(range(2))}).save_to_disk(str(root))
    elif form == "parquet":
        root = tmp_path / "pictures.parquet"
        dataset.to_parquet(str(root))
    else:
        dataset.save_to_disk(str(tmp_path / "saved"))
        root = next((tmp_path / "saved").glob("*.arrow"))
    cfg = DataConfig(name="hf", root=str(root), image_size=16, channels=3)
    ensure_dataset(cfg)
    assert f"data: {root}: 12 images, 3 classes, 3x16x16 uint8" in capsys.readouterr().out
    data = load_dataset(cfg)
    assert data.classes == tuple(CLASSES) and data.labels.tolist() == labels
    assert np.array_equal(data.images.numpy(), _expected(images))
    limited = load_dataset(DataConfig(**{**vars(cfg), "limit": 5}))
    assert torch.equal(limited.images, data.images[:5])


def test_plain_integer_labels_are_named_by_their_values_and_no_label_column_means_unlabelled(tmp_path, cache):
    images, _ = _pictures(4)
    plain = datasets.Dataset.from_dict({"picture": images, "kind": [7, 3, 7, 3]})
    plain = plain.cast_column("picture", datasets.Image())
    plain.save_to_disk(str(tmp_path / "plain"))
    cfg = DataConfig(name="hf", root=str(tmp_path / "plain"), image_column="picture", label_column="kind")
    ensure_dataset(cfg)
    data = load_dataset(cfg)
    assert data.classes == ("3", "7") and data.labels.tolist() == [1, 0, 1, 0] and data.images.shape == (4, 1, 28, 28)
    unlabelled = DataConfig(**{**vars(cfg), "label_column": "label"})
    ensure_dataset(unlabelled)
    assert load_dataset(unlabelled).labels is None


def _error(cfg: DataConfig) -> str:
    with pytest.raises(UserError) as err:
        ensure_dataset(cfg)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_datasets_are_one_line_naming_the_column_or_row(tmp_path, cache):
    dataset, _, _ = _dataset(4)
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert _error(DataConfig(name="hf", root=str(tmp_path / "saved"), image_column="img")) == (
        f"the dataset {tmp_path / 'saved'} has no column 'img' (it has image, label); "
        "set data.image_column to the one that holds the images"
    )
    assert _error(DataConfig(name="hf", root=str(tmp_path / "saved"), image_column="label")).startswith(
        "column 'label' of "
    )
    broken = datasets.Dataset.from_dict({"image": [b"\x89PNG not really", _png_bytes()]})
    broken.save_to_disk(str(tmp_path / "broken"))
    assert _error(DataConfig(name="hf", root=str(tmp_path / "broken"))) == (
        f"cannot read image row 0 of {tmp_path / 'broken'} (column image) (not an image Pillow can read); "
        "remove or replace it, or set data.skip_bad_images=true to skip unreadable files"
    )
    assert _error(DataConfig(name="hf", root=str(tmp_path / "nowhere"))).startswith(
        f"data.root {tmp_path / 'nowhere'} does not exist; for data.name=hf give a save_to_disk folder"
    )
    (tmp_path / "empty").mkdir()
    assert _error(DataConfig(name="hf", root=str(tmp_path / "empty"))).startswith(
        f"data.root {tmp_path / 'empty'} is not a folder written by save_to_disk"
    )


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_hub_name_offline_and_not_cached_is_one_line_with_exit_code_2(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_DATASETS_CACHE")
    proc = run_python(train_command(tmp_path / "run", "data.name=hf", "data.root=huggan/pokemon"), env=env)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "dcgan: error: the dataset huggan/pokemon is not in the local Hugging Face cache and the Hub cannot be "
        "reached (offline); download it once where it can, or point data.root at a save_to_disk folder or a "
        "parquet file"
    ]


@pytest.mark.slow
def test_a_conditional_gan_trains_on_a_saved_dataset_with_its_labels(tmp_path, cache):
    dataset, _, _ = _dataset(48)
    dataset.save_to_disk(str(tmp_path / "saved"))
    overrides = ("data.name=hf", f"data.root={tmp_path / 'saved'}", "data.image_size=32", "data.channels=3")
    proc = run_train(tmp_path / "run", *overrides, "model.conditional=true", "model.width=8", "train.max_steps=3")
    assert "48 images, 3 classes, 3x32x32 uint8" in proc.stdout
    assert read_metrics(tmp_path / "run")[-1]["step"] == 3


def test_forked_worker_processes_decode_a_dataset_like_one_process(tmp_path, cache, monkeypatch, capsys):
    dataset, images, _ = _dataset(12)
    dataset.save_to_disk(str(tmp_path / "saved"))
    cfg = DataConfig(name="hf", root=str(tmp_path / "saved"), image_size=16, channels=3)
    monkeypatch.setattr(decoding, "PROCESSES_FROM", 1)
    monkeypatch.setattr(decoding, "CHUNK", 5)
    monkeypatch.setattr(building, "workers_for", lambda sharing=1: 2)
    ensure_dataset(cfg)
    assert "into 9.0 kB with 2 processes (once; cached)" in capsys.readouterr().out
    assert np.array_equal(load_dataset(cfg).images.numpy(), _expected(images))
