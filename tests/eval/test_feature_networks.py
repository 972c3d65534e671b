"""The shipped feature networks (MNIST, Fashion-MNIST): checksums, accuracy, packaging, refusals, and a
reproducible recipe; networks for other data are refused."""

from fnmatch import fnmatch

import pytest
import tomllib
import torch

from conftest import REPO
from dcgan.config import DataConfig
from dcgan.data import load_dataset
from dcgan.errors import UserError
from dcgan.eval import networks as classifier
from dcgan.eval.networks import SHIPPED, WEIGHTS_DIR, load_classifier, network_for
from dcgan.eval.train_network import Recipe, accuracy, shift_images, train_classifier


@pytest.mark.parametrize(("dataset", "floor"), [("mnist", 0.99), ("fashion_mnist", 0.91)])
def test_shipped_weights_are_small_verified_packaged_and_documented(dataset, floor):
    name, sha256 = SHIPPED[dataset]
    assert (WEIGHTS_DIR / name).stat().st_size < 3 * 2**20
    model, record = load_classifier(dataset=dataset)
    assert record["sha256"] == sha256 and model.spec.dataset == dataset and model.spec.name == dataset
    assert record["command"].startswith(
        "dcgan train-classifier" + ("" if dataset == "mnist" else f" --dataset {dataset}")
    )
    assert record["test_accuracy"] >= floor and len(record["train_images_sha256"]) == 64
    assert sha256 in (REPO / "docs" / "metrics.md").read_text()  # the checksum is in the docs too
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "dcgan.eval"
    ]
    assert any(fnmatch(f"weights/{name}", pattern) for pattern in package_data)


@pytest.mark.parametrize(("dataset", "floor"), [("mnist", 0.99), ("fashion_mnist", 0.91)])
def test_shipped_weights_reach_their_accuracy_on_the_test_split(data_root, dataset, floor):
    model, record = load_classifier(dataset=dataset)
    test = load_dataset(DataConfig(name=dataset, root=str(data_root)), train=False)
    assert accuracy(model, test.images, test.labels) >= floor
    assert accuracy(model, test.images, test.labels) == pytest.approx(record["test_accuracy"], abs=1e-6)


def test_damaged_missing_or_foreign_weights_are_refused(tmp_path, monkeypatch):
    name, sha256 = SHIPPED["mnist"]
    data = bytearray((WEIGHTS_DIR / name).read_bytes())
    data[-1] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(classifier, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UserError, match="does not match its recorded sha256"):
        load_classifier()
    (tmp_path / name).unlink()
    with pytest.raises(
        UserError, match="is missing; reinstall the package or run dcgan train-classifier --dataset mnist"
    ):
        load_classifier()
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="is not a dcgan feature network"):
        load_classifier(tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="no feature network ships for data.name=folder"):
        network_for(DataConfig(name="folder"))
    assert network_for(DataConfig(name="folder"), required=False) is None


def test_a_network_for_other_data_is_refused():
    """Fashion-MNIST is never scored in MNIST's feature space, nor RGB images with a grey network."""
    mnist_file = str(WEIGHTS_DIR / SHIPPED["mnist"][0])
    with pytest.raises(UserError, match="reads mnist images .* but the data is fashion_mnist"):
        network_for(DataConfig(name="fashion_mnist"), mnist_file)
    with pytest.raises(UserError, match=r"reads mnist images \(1x28x28\), but the data is folder \(3x32x32\)"):
        network_for(DataConfig(name="folder", image_size=32, channels=3), mnist_file)
    model, _ = network_for(DataConfig(name="fashion_mnist"))
    assert model.spec.classes[0] == "T-shirt/top" and model.spec.mean == pytest.approx(0.286)


def test_shift_moves_each_image_by_at_most_two_pixels():
    images = torch.zeros(50, 3, 28, 28, dtype=torch.uint8)
    images[:, :, 14, 14] = torch.tensor([255, 128, 7], dtype=torch.uint8)[:, None].T
    shifted = shift_images(images, torch.Generator().manual_seed(0))
    positions = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = positions // 28, positions % 28
    assert shifted.sum((2, 3)).tolist() == [[255, 128, 7]] * 50  # the pixel is moved, not lost, in every channel
    assert torch.equal(shifted[:, 1].flatten(1).argmax(1), positions)  # and all channels move together
    assert (rows - 14).abs().max() == 2 and (cols - 14).abs().max() == 2 and len(set(positions.tolist())) > 10


def test_training_is_deterministic_and_records_its_command(tmp_path, data_root):
    data = DataConfig(root=str(data_root), limit=512)
    recipe = Recipe(seed=3, epochs=1, batch_size=64)
    first = train_classifier(data, tmp_path / "a" / "clf.safetensors", recipe, log=lambda line: None)
    train_classifier(data, tmp_path / "b" / "clf.safetensors", recipe, log=lambda line: None)
    assert (tmp_path / "a" / "clf.safetensors").read_bytes() == (tmp_path / "b" / "clf.safetensors").read_bytes()
    expected = "dcgan train-classifier --seed 3 --epochs 1 --batch-size 64 --lr 0.002 --threads 1 --limit 512"
    assert first["command"] == expected + " --out clf.safetensors"
    assert first["format"] == "dcgan-mnist-classifier/1" and "network" not in first  # the shipped MNIST file's format
    _, record = load_classifier(tmp_path / "a" / "clf.safetensors")
    assert len(record["feature_scale"]) == 3 and record["train_images"] == 512
    assert not torch.are_deterministic_algorithms_enabled()  # the process's settings are restored
