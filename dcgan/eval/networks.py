"""Feature networks: small CNN classifiers whose activations are the feature space of fid_<name> and friends.

Inception features are wrong for 28x28 images (and its weights cannot be downloaded here), so sample
quality is measured in the space of a network trained on the dataset itself. Networks for MNIST and
Fashion-MNIST ship with the package (`dcgan/weights/`); `dcgan train-classifier` reproduces them
(see dcgan/eval/train_network.py) and makes one for a labelled folder of your own. A network's file
records what it reads (`NetworkSpec`: channels, size, classes, pixel statistics, the name its metrics
carry), the command that made it and its test accuracy. Loading a shipped file verifies its sha256, so
metrics computed anywhere come from the same network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcgan.config import DataConfig
from dcgan.errors import UserError
from dcgan.eval.inception import InceptionNetwork, weights_file
from dcgan.io.files import file_sha256, read_weights

FORMAT = "dcgan-classifier/2"  # records its NetworkSpec under "network"
FORMAT_MNIST = "dcgan-mnist-classifier/1"  # the first format, MNIST's network only: its spec is MNIST_SPEC
METADATA_KEY = "classifier"  # its JSON: format, the command that made the file, its data and test accuracy
WEIGHTS_DIR = Path(__file__).parent / "weights"
# data.name -> (shipped file, its sha256); update a checksum (and docs/metrics.md) together with its file.
SHIPPED = {
    "mnist": ("mnist_classifier.safetensors", "e556720357e4ebf2e4b0ef45c75d23c648c0a2870d227b37d03769590a81150f"),
    "fashion_mnist": (
        "fashion_mnist_classifier.safetensors",
        "bf1f8fd1150383cee76f11160103b320e3abf98296c37e4e45fb64e8b670b5c2",
    ),
}
HIDDEN = 128  # the penultimate layer
FEATURE_DIM = 32 + 64 + HIDDEN  # features: both conv blocks, spatially averaged, and the penultimate layer


@dataclass(frozen=True)
class NetworkSpec:
    """What a feature network reads and what its metrics are called."""

    name: str
    """Metric suffix: fid_<name>, is_<name>."""
    dataset: str
    """The data.name it was trained on; it scores only generators of that dataset."""
    channels: int = 1
    image_size: int = 28
    classes: tuple[str, ...] = tuple("0123456789")
    mean: float = 0.1307
    """Pixel mean and std of its training images in [0, 1]: inputs are standardised inside the net."""
    std: float = 0.3081


MNIST_SPEC = NetworkSpec("mnist", "mnist")


class FeatureNetwork(nn.Module):
    """[0, 1] images (N, C, S, S) -> class logits; `features_and_logits` also gives the 224-d features.

    Strided 5x5 convolutions instead of conv + max-pool: the same accuracy here at a third of the CPU time,
    which matters because every evaluation embeds 10k generated images.

    Features are the penultimate layer (128) plus each conv block's channel means (32, 64). The
    penultimate layer alone maps inputs unlike any digit (noise, blank images) to near-zero activations,
    close to the middle of the real features: there, uniform noise scored fid_mnist 104, better than
    real digits of a single class (82-137), and blank images had precision 1.0. With the conv blocks'
    responses, noise is the worst set (212 vs 94-156 for single classes) and its precision is 0.
    (Measured with the MNIST network; every network has this architecture, sized to its input.)
    """

    feature_dim = FEATURE_DIM
    batch_size = 1000  # images per forward

    def __init__(self, spec: NetworkSpec = MNIST_SPEC):
        super().__init__()
        self.spec = spec
        self.name, self.classes = spec.name, spec.classes  # what dcgan/eval/inception.py's network also has
        side = (spec.image_size + 3) // 4  # after two stride-2 convolutions: 28 -> 7, 32 -> 8, 64 -> 16
        self.body = nn.Sequential(
            nn.Conv2d(spec.channels, 32, 5, 2, 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 5, 2, 2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(64 * side * side, HIDDEN),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(HIDDEN, len(spec.classes)))
        # Set once after training to each block's RMS over the training split, so every block has unit
        # scale: x.y/d ~ 0.3 as with Inception features, where KID's cubic kernel is well behaved (raw
        # activations gave ~3, and a KID standard deviation as large as the value itself on real data).
        self.register_buffer("feature_scale", torch.ones(3))

    def unscaled_blocks(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """([conv1 means (N, 32), conv2 means (N, 64), penultimate (N, 128)], logits (N, classes))."""
        conv1 = self.body[1](self.body[0]((images - self.spec.mean) / self.spec.std))
        conv2 = self.body[3](self.body[2](conv1))
        hidden = self.body[4:](conv2)
        return [conv1.mean((2, 3)), conv2.mean((2, 3)), hidden], self.head(hidden)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) in [0, 1] -> ((N, 224) scaled features, (N, classes) logits)."""
        blocks, logits = self.unscaled_blocks(images)
        return torch.cat([b / s for b, s in zip(blocks, self.feature_scale, strict=True)], dim=1), logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[1]


def _shipped(dataset: str) -> Path:
    """The checksum-verified network shipped for `dataset`."""
    if dataset not in SHIPPED:
        raise UserError(
            f"no feature network ships for data.name={dataset}; make one with dcgan train-classifier "
            "(from labelled subfolders) and pass it with --classifier or eval.classifier"
        )
    file, sha256 = WEIGHTS_DIR / SHIPPED[dataset][0], SHIPPED[dataset][1]
    if not file.is_file():
        raise UserError(
            f"{dataset} feature network {file} is missing; reinstall the package or run "
            f"dcgan train-classifier --dataset {dataset}"
        )
    if file_sha256(file) != sha256:
        raise UserError(f"{file} does not match its recorded sha256 {sha256[:12]}...; reinstall the package")
    return file


def load_classifier(path: Path | None = None, dataset: str = "mnist") -> tuple[FeatureNetwork, dict[str, Any]]:
    """(network in eval mode on CPU, its training record + sha256): the file at `path`, else the one
    shipped for `dataset`."""
    file = path or _shipped(dataset)
    if not file.is_file():
        raise UserError(f"feature network {file} does not exist; make one with dcgan train-classifier")
    tensors, meta = read_weights(file)
    try:
        record = json.loads(meta.get(METADATA_KEY, "{}"))
        spec = MNIST_SPEC if record["format"] == FORMAT_MNIST else None
        if record["format"] == FORMAT:
            spec = NetworkSpec(**{**record["network"], "classes": tuple(record["network"]["classes"])})
    except (ValueError, KeyError, TypeError):
        spec = None
    if spec is None:
        raise UserError(f"{file} is not a dcgan feature network (no '{FORMAT}' metadata)")
    model = FeatureNetwork(spec)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{file} does not fit the network its metadata describes ({e})") from None
    record["sha256"] = file_sha256(file)
    return model.eval(), record


def network_for(
    data: DataConfig, path: str = "", required: bool = True
) -> tuple[FeatureNetwork, dict[str, Any]] | None:
    """The network that scores generators of `data`: the file at `path`, else the one shipped for data.name.
    With neither (a folder), None, or a UserError when `required`. A network trained on other data is
    refused: its features would score the wrong thing (say, Fashion-MNIST against digits)."""
    if not path and data.name not in SHIPPED and not required:
        return None
    model, record = load_classifier(Path(path) if path else None, data.name)
    spec = model.spec
    if spec.dataset != data.name or (spec.channels, spec.image_size) != (data.channels, data.image_size):
        raise UserError(
            f"feature network {path or SHIPPED[data.name][0]} reads {spec.dataset} images "
            f"({spec.channels}x{spec.image_size}x{spec.image_size}), but the data is {data.name} "
            f"({data.channels}x{data.image_size}x{data.image_size}); make one for this data with dcgan train-classifier"
        )
    return model, record


def scoring_network(
    data: DataConfig, network: str = "dataset", classifier: str = "", inception_weights: str = "", required: bool = True
) -> tuple[nn.Module, str] | None:
    """(network in eval mode on CPU, sha256 of its weights) behind the metrics of generators of `data`:
    `network` "inception" is the standard Inception-v3 (any data); "dataset" the data's own feature network
    (see `network_for`, which also says when that is None)."""
    if network == "inception":
        model = InceptionNetwork(weights_file(inception_weights))
        return model, model.sha256
    chosen = network_for(data, classifier, required)
    return None if chosen is None else (chosen[0], chosen[1]["sha256"])


@torch.no_grad()
def embed_and_classify(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, model.feature_dim), class probabilities (N, classes)) of [0, 1] images, float32, on the
    model's device: a FeatureNetwork, or the Inception network (dcgan/eval/inception.py: no classes)."""
    device = next(model.parameters()).device
    features, probs = [], []
    for batch in images.split(model.batch_size):
        f, logits = model.features_and_logits(batch.to(device, torch.float32))
        features.append(f)
        probs.append(logits.softmax(dim=1))
    return torch.cat(features), torch.cat(probs)
