"""The shipped MNIST feature network: checksum, accuracy, packaging, refusals, and a reproducible recipe."""

from fnmatch import fnmatch

import pytest
import tomllib
import torch

from conftest import REPO
from dcgan import classifier
from dcgan.classifier import WEIGHTS, WEIGHTS_SHA256, load_classifier
from dcgan.classifier_train import accuracy_on_test_split, shift_images, train_classifier
from dcgan.config import DataConfig
from dcgan.errors import UserError


def test_shipped_weights_are_small_verified_packaged_and_documented():
    assert WEIGHTS.stat().st_size < 3 * 2**20
    model, record = load_classifier()
    assert record["sha256"] == WEIGHTS_SHA256
    assert record["command"].startswith("dcgan train-classifier --seed 0")
    assert record["test_accuracy"] >= 0.99 and len(record["train_images_sha256"]) == 64
    assert WEIGHTS_SHA256 in (REPO / "README.md").read_text()  # the checksum is in the docs too
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dcgan"]
    assert any(fnmatch(str(WEIGHTS.relative_to(REPO / "dcgan")), pattern) for pattern in package_data)


def test_shipped_weights_reach_99_percent_on_the_test_split(data_root):
    model, record = load_classifier()
    accuracy = accuracy_on_test_split(model, DataConfig(root=str(data_root)))
    assert accuracy >= 0.99
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-6)  # the recorded number is this one


def test_damaged_missing_or_foreign_weights_are_refused(tmp_path, monkeypatch):
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(WEIGHTS.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(classifier, "WEIGHTS", damaged)
    with pytest.raises(UserError, match="does not match its recorded sha256"):
        load_classifier()
    monkeypatch.setattr(classifier, "WEIGHTS", tmp_path / "gone.safetensors")
    with pytest.raises(UserError, match="are missing; reinstall the package or run dcgan train-classifier"):
        load_classifier()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="is not an MNIST classifier"):
        load_classifier(tmp_path / "other.safetensors")


def test_shift_moves_each_image_by_at_most_two_pixels():
    images = torch.zeros(50, 28, 28, dtype=torch.uint8)
    images[:, 14, 14] = 255
    shifted = shift_images(images, torch.Generator().manual_seed(0))
    positions = shifted.flatten(1).argmax(1)
    rows, cols = positions // 28, positions % 28
    assert shifted.sum((1, 2)).eq(255).all()  # the pixel is moved, not lost
    assert (rows - 14).abs().max() == 2 and (cols - 14).abs().max() == 2 and len(set(positions.tolist())) > 10


def test_training_is_deterministic_and_records_its_command(tmp_path, data_root):
    kwargs = dict(seed=3, epochs=1, batch_size=64, limit=512, log=lambda line: None)
    first = train_classifier(str(data_root), tmp_path / "a" / "clf.safetensors", **kwargs)
    train_classifier(str(data_root), tmp_path / "b" / "clf.safetensors", **kwargs)
    assert (tmp_path / "a" / "clf.safetensors").read_bytes() == (tmp_path / "b" / "clf.safetensors").read_bytes()
    expected = "dcgan train-classifier --seed 3 --epochs 1 --batch-size 64 --lr 0.002 --threads 1 --limit 512"
    assert first["command"] == expected + " --out clf.safetensors"
    _, record = load_classifier(tmp_path / "a" / "clf.safetensors")
    assert len(record["feature_scale"]) == 3 and record["train_images"] == 512
    assert not torch.are_deterministic_algorithms_enabled()  # the process's settings are restored
