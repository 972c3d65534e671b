"""Reference statistics of real images in a feature network's space, computed once and cached.

Generated samples are scored against the dataset's test split where it has one (MNIST, Fashion-MNIST:
10k images the GAN never sees), else against the training images (a folder; a seeded 10k of them when
there are more). Their features, mean, covariance, class shares and k-NN radii are cached as
safetensors under the user cache (`$DCGAN_CACHE`, else `$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`),
keyed by a hash of the images and the sha256 of the network: other data or another network never
reuses a stale cache.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from dcgan.config import DataConfig
from dcgan.data import fingerprint, has_test_split, load_dataset
from dcgan.data.cache import cache_dir
from dcgan.data.idx import ensure_dataset as ensure_idx
from dcgan.eval.metrics import class_shares, knn_radii, mean_and_covariance
from dcgan.eval.networks import embed_and_classify
from dcgan.io.files import save_weights

K_NEIGHBOURS = 3  # Kynkäänniemi et al.'s choice for precision/recall manifolds
MAX_IMAGES = 10_000  # a folder's reference: k-NN radii cost grows with the square of the count
_FORMAT = "dcgan-reference/2"


@dataclass
class Reference:
    features: torch.Tensor  # (N, d) float32; d = 224 for a dataset's network, 2048 for Inception
    mu: torch.Tensor  # (d,) float64
    sigma: torch.Tensor  # (d, d) float64
    shares: torch.Tensor  # (classes,) float64: the network's class shares on the reference images (Inception: none)
    radii: torch.Tensor  # (N,) distance to the K_NEIGHBOURS-th neighbour (Inception: none, no precision/recall)

    def to(self, device: torch.device) -> Reference:
        return Reference(*(getattr(self, f).to(device) for f in ("features", "mu", "sigma", "shares", "radii")))


def compute_reference(images: torch.Tensor, network: nn.Module) -> Reference:
    """Reference statistics of uint8 (N, C, S, S) images in the space of `network` (see embed_and_classify)."""
    features, probs = embed_and_classify(network, images.float().div(255))
    mu, sigma = mean_and_covariance(features)
    if not network.classes:
        return Reference(features.cpu(), mu.cpu(), sigma.cpu(), torch.zeros(0, dtype=torch.float64), torch.zeros(0))
    return Reference(
        features.cpu(),
        mu.cpu(),
        sigma.cpu(),
        class_shares(probs, probs.shape[1]),
        knn_radii(features, K_NEIGHBOURS).cpu(),
    )


def reference_split(data: DataConfig) -> tuple[DataConfig, bool]:
    """(config, train?) of the images generated ones are compared with: the test split, else the training images."""
    if has_test_split(data):
        return dataclasses.replace(data, limit=0), False
    return data, True


def reference_images(data: DataConfig) -> torch.Tensor:
    """The reference split's uint8 images (at most MAX_IMAGES, a seeded choice)."""
    images = load_dataset(*reference_split(data)).images
    if len(images) > MAX_IMAGES:
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:MAX_IMAGES]]
    return images


def describe_reference(data: DataConfig, reference: Reference) -> str:
    """Which real images the generated ones were compared with, as results record it: FID depends on it."""
    train = reference_split(data)[1]
    return f"{data.name} {'training images' if train else 'test split'} ({len(reference.features)} images)"


def ensure_reference_data(data: DataConfig) -> None:
    """Download the reference split if it is missing and `data.download` allows (MNIST's, Fashion-MNIST's test
    split); a folder's reference is its training images, already there."""
    source, train = reference_split(data)
    if not train:
        ensure_idx(source)


def reference_for(data: DataConfig, network: nn.Module, network_sha256: str) -> Reference:
    """The reference of `data` in `network`'s space: read from the cache, else computed and cached (atomic
    write, so ranks may call it at once)."""
    ensure_reference_data(data)
    source, train = reference_split(data)
    data_sha = fingerprint(source, train)
    split = "train" if train else "test"
    kind = "clf" if network.classes else network.name  # "clf": the name caches of dataset networks always had
    path = cache_dir() / f"{data.name}-{split}-{data_sha[:16]}-{kind}-{network_sha256[:16]}.safetensors"
    if path.is_file():
        try:
            return Reference(**load_file(str(path)))
        except (SafetensorError, OSError, TypeError) as e:
            warnings.warn(f"ignoring unreadable reference cache {path} ({e}); recomputing it", stacklevel=2)
    reference = compute_reference(reference_images(data), network)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": _FORMAT, "images_sha256": data_sha, "classifier_sha256": network_sha256}
        save_weights(path, vars(reference), metadata)
    except OSError as e:  # a read-only home must not stop an evaluation, only make the next one slower
        warnings.warn(f"cannot cache reference statistics in {path.parent} ({e}); set DCGAN_CACHE", stacklevel=2)
    return reference
