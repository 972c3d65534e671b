"""Sample-quality metrics on feature vectors and class probabilities (pure functions, no I/O).

The features come from a feature network trained on the data itself (dcgan/eval/networks.py), so these are
dataset-specific versions of the usual metrics: `fid_mnist` is a Fréchet distance in the MNIST network's
224-d feature space, not the Inception FID, and its numbers are not comparable with published FIDs.
Lower is better for fid and KID; higher for the others. Every value depends on the sample size, so
compare runs at equal N.
"""

from __future__ import annotations

import math

import torch


def mean_and_covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (d,), unbiased covariance (d, d)), both float64."""
    x = features.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (round-off negatives -> 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64.

    tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), and the inner matrix is symmetric PSD, so two symmetric
    eigen-decompositions replace scipy's general sqrtm and its complex round-off.
    """
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(value.item(), 0.0)


def kernel_inception_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 10, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3, mean and std over subsets.

    Subsets are drawn without replacement inside each set from a seeded stream, so equal inputs give
    equal numbers.
    """
    size = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    stream = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=stream)[:size].to(real.device)].double()
        y = fake[torch.randperm(len(fake), generator=stream)[:size].to(fake.device)].double()
        k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = size * (size - 1)
        mmd = (
            (k_xx.sum() - k_xx.diagonal().sum()) / off_diagonal
            + (k_yy.sum() - k_yy.diagonal().sum()) / off_diagonal
            - 2 * k_xy.mean()
        )
        values.append(mmd.item())
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
    return mean, std


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with the feature network: from 1 (one class, or unsure) to the number of
    classes (sure, balanced)."""
    p = probs.double().clamp(min=1e-12)
    marginal = p.mean(0, keepdim=True)
    return math.exp((p * (p.log() - marginal.log())).sum(1).mean().item())


def class_shares(probs: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """Fraction of images the classifier assigns to each class (argmax), float64 (classes,)."""
    counts = torch.bincount(probs.argmax(1).cpu(), minlength=classes).double()
    return counts / counts.sum()


def class_coverage(fake_probs: torch.Tensor, real_shares: torch.Tensor) -> torch.Tensor:
    """Per class the real images hold, the generated share over the real share: 1 everywhere is perfect,
    0 is a missing class. Classes the network knows but the real images lack (part of a folder) are left out."""
    real = real_shares.double().cpu()
    present = real > 0
    return class_shares(fake_probs, len(real))[present] / real[present]


def knn_radii(features: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """Distance from each vector to its k-th nearest neighbour in the same set (itself excluded)."""
    x = features.float()
    radii = []
    for block in x.split(chunk):
        # k + 1 smallest: the first is the vector itself (distance 0).
        radii.append(torch.cdist(block, x).topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_any_ball(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of `queries` within radius_j of some centre j."""
    hits = []
    for block in queries.float().split(chunk):
        hits.append((torch.cdist(block, centres.float()) <= radii[None, :]).any(dim=1))
    return torch.cat(hits).float().mean().item()


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, real_radii: torch.Tensor | None = None, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in feature space.

    Precision: share of generated images inside the real manifold (quality); recall: share of real
    images inside the generated manifold (diversity). `real_radii` may be passed in from a cache.
    """
    if real_radii is None:
        real_radii = knn_radii(real, k)
    precision = _inside_any_ball(fake, real, real_radii)
    recall = _inside_any_ball(real, fake, knn_radii(fake, k))
    return precision, recall
