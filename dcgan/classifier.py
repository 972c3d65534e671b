"""The MNIST feature network: a small CNN classifier whose penultimate layer is fid_mnist's feature space.

Inception features are wrong for 28x28 digits (and its weights cannot be downloaded here), so sample
quality is measured in the space of a network trained on MNIST itself. Its weights ship with the package
(`dcgan/weights/mnist_classifier.safetensors`); `dcgan train-classifier` reproduces them (see
`train_classifier`), and the file's metadata records the command, the data it saw and its test accuracy.
Loading verifies the shipped file's sha256, so metrics computed anywhere come from the same network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcgan.checkpoint import file_sha256, read_weights
from dcgan.errors import UserError

FORMAT = "dcgan-mnist-classifier/1"
METADATA_KEY = "classifier"  # its JSON: format, the command that made the file, its data and test accuracy
WEIGHTS = Path(__file__).parent / "weights" / "mnist_classifier.safetensors"
# sha256 of the shipped file; update it (and the README) together with the file.
WEIGHTS_SHA256 = "e556720357e4ebf2e4b0ef45c75d23c648c0a2870d227b37d03769590a81150f"
HIDDEN = 128  # the penultimate layer
FEATURE_DIM = 32 + 64 + HIDDEN  # features: both conv blocks, spatially averaged, and the penultimate layer
_MEAN, _STD = 0.1307, 0.3081  # MNIST's pixel statistics: inputs are standardised inside the net


class MNISTClassifier(nn.Module):
    """[0, 1] images (N, 1, 28, 28) -> 10 logits; `features_and_logits` also gives the 224-d features.

    Strided 5x5 convolutions instead of conv + max-pool: the same accuracy here at a third of the CPU time,
    which matters because every evaluation embeds 10k generated images.

    Features are the penultimate layer (128) plus each conv block's channel means (32, 64). The
    penultimate layer alone maps inputs unlike any digit (noise, blank images) to near-zero activations,
    close to the middle of the real features: there, uniform noise scored fid_mnist 104, better than
    real digits of a single class (82-137), and blank images had precision 1.0. With the conv blocks'
    responses, noise is the worst set (212 vs 94-156 for single classes) and its precision is 0.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, 2, 2),  # 28 -> 14
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 5, 2, 2),  # 14 -> 7
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, HIDDEN),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(HIDDEN, 10))
        # Set once after training to each block's RMS over the training split, so every block has unit
        # scale: x.y/d ~ 0.3 as with Inception features, where KID's cubic kernel is well behaved (raw
        # activations gave ~3, and a KID standard deviation as large as the value itself on real data).
        self.register_buffer("feature_scale", torch.ones(3))

    def unscaled_blocks(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """([conv1 means (N, 32), conv2 means (N, 64), penultimate (N, 128)], logits (N, 10))."""
        conv1 = self.body[1](self.body[0]((images - _MEAN) / _STD))
        conv2 = self.body[3](self.body[2](conv1))
        hidden = self.body[4:](conv2)
        return [conv1.mean((2, 3)), conv2.mean((2, 3)), hidden], self.head(hidden)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, 28, 28) in [0, 1] -> ((N, 224) scaled features, (N, 10) logits)."""
        blocks, logits = self.unscaled_blocks(images)
        return torch.cat([b / s for b, s in zip(blocks, self.feature_scale, strict=True)], dim=1), logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[1]


def load_classifier(path: Path | None = None) -> tuple[MNISTClassifier, dict[str, Any]]:
    """(classifier in eval mode on CPU, its training record + sha256). Without `path`, the shipped weights,
    checksum-verified."""
    file = path or WEIGHTS
    if not file.is_file():
        raise UserError(
            f"MNIST classifier weights {file} are missing; reinstall the package or run dcgan train-classifier"
        )
    if path is None and file_sha256(file) != WEIGHTS_SHA256:
        raise UserError(f"{file} does not match its recorded sha256 {WEIGHTS_SHA256[:12]}...; reinstall the package")
    tensors, meta = read_weights(file)
    try:
        record = json.loads(meta.get(METADATA_KEY, "{}"))
    except ValueError:
        record = {}
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{file} is not an MNIST classifier (no '{FORMAT}' metadata)")
    model = MNISTClassifier()
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{file} does not fit the classifier architecture ({e})") from None
    record["sha256"] = file_sha256(file)
    return model.eval(), record


@torch.no_grad()
def embed_and_classify(
    model: MNISTClassifier, images: torch.Tensor, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), class probabilities (N, 10)) of [0, 1] images, float32, on the model's device."""
    device = next(model.parameters()).device
    features, probs = [], []
    for batch in images.split(batch_size):
        f, logits = model.features_and_logits(batch.to(device, torch.float32))
        features.append(f)
        probs.append(logits.softmax(dim=1))
    return torch.cat(features), torch.cat(probs)
