import sys

import pytest
import torch

from conftest import REPO, _env, run_python
from dcgan.config import DataConfig
from dcgan.data import ShardedBatches, ensure_dataset, from_model_range, load_dataset, to_model_range
from dcgan.data.idx import load_images
from dcgan.errors import UserError


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_are_disjoint_and_cover_the_split(world):
    n, batch = 1000, 16
    shards = [ShardedBatches(n, batch, world, rank, seed=0).indices(epoch=0) for rank in range(world)]
    steps = n // (batch * world)
    assert all(s.shape == (steps, batch) for s in shards)  # every rank runs the same number of steps
    seen = torch.cat([s.flatten() for s in shards])
    assert len(set(seen.tolist())) == len(seen) == steps * batch * world  # disjoint
    assert len(seen) > n - batch * world  # only the tail that cannot fill a global batch is left out


def test_order_is_reshuffled_per_epoch_and_fixed_by_seed():
    batches = ShardedBatches(600, 10, 2, 1, seed=5)
    e0, e1 = batches.indices(0), batches.indices(1)
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, ShardedBatches(600, 10, 2, 1, seed=5).indices(0))
    assert not torch.equal(e0, ShardedBatches(600, 10, 2, 1, seed=6).indices(0))


def test_global_batches_do_not_depend_on_how_they_are_split():
    one = ShardedBatches(640, 32, 1, 0, seed=1).indices(0)
    two = [ShardedBatches(640, 16, 2, r, seed=1).indices(0) for r in range(2)]
    assert torch.equal(one, torch.cat(two, dim=1))


def test_too_few_samples_for_one_global_batch():
    with pytest.raises(UserError, match="cannot fill one global batch of 64"):
        ShardedBatches(50, 32, 2, 0, seed=0)


def test_pixel_ranges_round_trip():
    images = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8)
    for pixel_range, (low, high) in {"signed": (-1, 1), "unit": (0, 1)}.items():
        x = to_model_range(images, pixel_range)
        assert x.shape == (1, 1, 2, 2) and x.min() == low and x.max() == high
        assert torch.allclose(from_model_range(x, pixel_range) * 255, images.float())


def test_real_mnist_loads_once_into_memory(data_root):
    from torchvision.datasets import MNIST

    images = load_images(DataConfig(root=str(data_root), download=False))
    assert torch.equal(images, MNIST(str(data_root)).data)  # our IDX reader reads what torchvision reads
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert abs(images.float().mean().item() / 255 - 0.1307) < 1e-3  # white digits on black
    assert load_images(DataConfig(root=str(data_root), limit=100)).shape == (100, 28, 28)


def test_fashion_mnist_loads_counts_balance_and_mean(data_root):
    from torchvision.datasets import FashionMNIST

    cfg = DataConfig(name="fashion_mnist", root=str(data_root), download=False)
    train, test = load_dataset(cfg), load_dataset(cfg, train=False)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [6000] * 10 and torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-4)  # Zalando's published mean
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert torch.equal(train.images[:, 0], FashionMNIST(str(data_root)).data)  # what torchvision reads
    mnist = load_dataset(DataConfig(root=str(data_root)))
    assert not torch.equal(train.images[:100], mnist.images[:100])  # each name reads its own files


def test_missing_data_without_download_says_where(tmp_path):
    with pytest.raises(UserError) as err:
        ensure_dataset(DataConfig(root=str(tmp_path), download=False))
    assert f"MNIST files missing in {tmp_path}/MNIST/raw/" in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)
    with pytest.raises(UserError, match=f"Fashion-MNIST files missing in {tmp_path}/FashionMNIST/raw/"):
        ensure_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False))


@pytest.mark.slow
def test_offline_download_fails_fast_with_one_line(tmp_path):
    """Through the real CLI, with every download pointed at a closed local port (as on an offline node)."""
    env = _env()
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    proc = run_python(
        [sys.executable, str(REPO / "train.py"), f"data.root={tmp_path}", f"output_dir={tmp_path / 'run'}"], env=env
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dcgan: error: MNIST is missing and could not be downloaded")
    assert f"{tmp_path}/MNIST/raw/" in lines[0]
