"""The metric functions on known inputs, and their ranking of real, damaged and fake MNIST sets."""

import math

import pytest
import torch
from torch.nn import functional as F

from dcgan.config import DataConfig
from dcgan.data.idx import load_images, load_labels
from dcgan.eval.evaluation import score
from dcgan.eval.metrics import (
    class_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_and_covariance,
    precision_recall,
)
from dcgan.eval.networks import embed_and_classify, load_classifier
from dcgan.eval.reference import reference_for


def test_frechet_distance_matches_the_closed_form():
    # Diagonal covariances commute: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)
    # A rotated pair: the distance does not depend on the basis.
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    rotated = frechet_distance(
        q @ mu1.double(), q @ torch.diag(a).double() @ q.T, q @ mu2.double(), q @ torch.diag(b).double() @ q.T
    )
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_singular():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(1))
    x[:, 3] = 0  # a dead feature: a singular covariance, as ReLU features have
    mu, sigma = mean_and_covariance(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-9)


def test_kid_is_unbiased_seeded_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g)
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=500, seed=0)
    assert abs(same) < 0.01  # unbiased: ~0 for two samples of one distribution (the biased estimate is > 0)
    kid = lambda x, y, seed=0: kernel_inception_distance(x, y, subsets=5, subset_size=500, seed=seed)  # noqa: E731
    assert kid(a, b + 0.5) == kid(a, b + 0.5) != kid(a, b + 0.5, seed=1)
    assert 0.01 < kid(a, b + 0.5)[0] < kid(a, b + 1.0)[0]


def test_inception_score_and_coverage_on_known_class_probabilities():
    balanced = F.one_hot(torch.arange(1000) % 10, 10).float()
    assert inception_score(balanced) == pytest.approx(10, rel=1e-6)
    assert inception_score(F.one_hot(torch.full((1000,), 3), 10).float()) == pytest.approx(1, rel=1e-6)
    assert inception_score(torch.full((1000, 10), 0.1)) == pytest.approx(1, rel=1e-6)  # unsure about everything
    real = torch.full((10,), 0.1)
    half_threes = F.one_hot(torch.cat([torch.full((500,), 3), torch.arange(500) % 10]), 10).float()
    coverage = class_coverage(half_threes, real)
    assert coverage[3].item() == pytest.approx(5.5) and coverage[0].item() == pytest.approx(0.5)


def test_precision_and_recall_on_known_geometry():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(1000, 4, generator=g)
    # Fakes covering only the half x0 > 0: all inside the real manifold, about half of it covered (the
    # k-NN balls of the boundary points reach a little over the edge).
    precision, recall = precision_recall(real, real[real[:, 0] > 0])
    assert precision == 1.0 and 0.5 < recall < 0.7
    far = torch.randn(300, 4, generator=g) + 100
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = real[:1].repeat(300, 1)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.01  # all fakes real-looking, nearly no diversity


def _blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    kernel = torch.exp(-(torch.arange(-2, 3.0) ** 2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    images = F.conv2d(F.pad(images, (2, 2, 0, 0)), kernel.view(1, 1, 1, 5))
    return F.conv2d(F.pad(images, (0, 0, 2, 2)), kernel.view(1, 1, 5, 1))


@pytest.fixture(scope="module")
def scorer(data_root):
    classifier, meta = load_classifier()
    reference = reference_for(DataConfig(root=str(data_root)), classifier, meta["sha256"])

    def run(images: torch.Tensor) -> dict:
        features, probs = embed_and_classify(classifier, images)
        return score(features, probs, reference)

    return run


@pytest.mark.slow
def test_worse_sets_rank_worse_in_order(scorer, data_root):
    """2000 images each, against the 10k test split (measured: fid_mnist 1.6, 8.7, 26, 150, 212)."""
    data = DataConfig(root=str(data_root))
    train = load_images(data)[:2000].float().div(255).unsqueeze(1)
    ones = load_images(data)[load_labels(data) == 1][:2000].float().div(255).unsqueeze(1)
    noise = torch.Generator().manual_seed(0)
    sets = {
        "training split": train,
        "noise added": (train + 0.1 * torch.randn(train.shape, generator=noise)).clamp(0, 1),
        "blurred": _blur(train),
        "single class (mode collapse)": ones,
        "pure noise": torch.rand(train.shape, generator=noise),
    }
    results = {name: scorer(images) for name, images in sets.items()}
    for key in ("fid_mnist", "kid"):
        values = [r[key] for r in results.values()]
        assert values == sorted(values), f"{key} does not rank {list(results)} in order: {values}"
    floor = results["training split"]
    assert floor["fid_mnist"] < 3 and abs(floor["kid"]) < 0.02  # near the floor (0 at infinite N)
    assert floor["is_mnist"] > 9.5 and floor["coverage_min"] > 0.85 and min(floor["precision"], floor["recall"]) > 0.8
    collapse, noise_set = results["single class (mode collapse)"], results["pure noise"]
    assert collapse["coverage_min"] == 0 and collapse["is_mnist"] < 1.2 and collapse["recall"] < 0.2
    assert noise_set["precision"] < 0.01 and noise_set["recall"] < 0.01 and math.isfinite(noise_set["fid_mnist"])


def test_same_images_same_numbers(scorer, data_root):
    images = load_images(DataConfig(root=str(data_root)), train=True)[-600:].float().div(255).unsqueeze(1)
    assert scorer(images) == scorer(images)
