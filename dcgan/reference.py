"""Reference statistics of the MNIST test split in the classifier's feature space, computed once and cached.

Generated samples are scored against the 10k test images (never seen by the GAN). Their features, mean,
covariance, class shares and k-NN radii are cached as safetensors under the user cache
(`$DCGAN_CACHE`, else `$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`), keyed by the sha256 of the test
images and of the classifier weights: other data or another network never reuses a stale cache.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dcgan.checkpoint import save_weights
from dcgan.classifier import MNISTClassifier, embed_and_classify
from dcgan.config import DataConfig
from dcgan.data import ensure_dataset, load_images, split_sha256
from dcgan.metrics import class_shares, knn_radii, mean_and_covariance

K_NEIGHBOURS = 3  # Kynkäänniemi et al.'s choice for precision/recall manifolds
_FORMAT = "dcgan-mnist-reference/1"


@dataclass
class Reference:
    features: torch.Tensor  # (10000, 128) float32
    mu: torch.Tensor  # (128,) float64
    sigma: torch.Tensor  # (128, 128) float64
    shares: torch.Tensor  # (10,) float64: the classifier's class shares on the test split
    radii: torch.Tensor  # (10000,) distance to the K_NEIGHBOURS-th neighbour

    def to(self, device: torch.device) -> Reference:
        return Reference(*(getattr(self, f).to(device) for f in ("features", "mu", "sigma", "shares", "radii")))


def cache_dir() -> Path:
    if os.environ.get("DCGAN_CACHE"):
        return Path(os.environ["DCGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan"


def compute_reference(images: torch.Tensor, classifier: MNISTClassifier) -> Reference:
    """Reference statistics of uint8 (N, 28, 28) images."""
    features, probs = embed_and_classify(classifier, images.float().div(255).unsqueeze(1))
    mu, sigma = mean_and_covariance(features)
    return Reference(
        features.cpu(), mu.cpu(), sigma.cpu(), class_shares(probs), knn_radii(features, K_NEIGHBOURS).cpu()
    )


def reference_of_test_split(data: DataConfig, classifier: MNISTClassifier, classifier_sha256: str) -> Reference:
    """The test split's statistics: read from the cache, else computed and cached (atomic write). Main process only."""
    ensure_dataset(data)
    data_sha = split_sha256(data, train=False)
    path = cache_dir() / f"mnist-test-{data_sha[:16]}-clf-{classifier_sha256[:16]}.safetensors"
    if path.is_file():
        try:
            return Reference(**load_file(str(path)))
        except (SafetensorError, OSError, TypeError) as e:
            warnings.warn(f"ignoring unreadable reference cache {path} ({e}); recomputing it", stacklevel=2)
    reference = compute_reference(load_images(DataConfig(root=data.root), train=False), classifier)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": _FORMAT, "test_images_sha256": data_sha, "classifier_sha256": classifier_sha256}
        save_weights(path, vars(reference), metadata)
    except OSError as e:  # a read-only home must not stop an evaluation, only make the next one slower
        warnings.warn(f"cannot cache reference statistics in {path.parent} ({e}); set DCGAN_CACHE", stacklevel=2)
    return reference
