"""The standard Inception FID and KID: Inception-v3 with the 2015-12-05 TensorFlow weights, as papers report them.

The network and its weights format are torch-fidelity's (`FeatureExtractorInceptionV3`, the one torchmetrics
wraps too): a port of the TF graph that TTUR's FID code ran, which resizes to 299x299 with TensorFlow 1's
bilinear interpolation (pytorch-fid resizes with torch's, and its numbers differ slightly). We feed it what
papers feed it: images quantised to uint8 as they would be saved as PNGs, grey ones repeated to three
channels; features are the 2048-d pool layer. docs/metrics.md says why and what the numbers compare with.

The weights are never downloaded here: they are read from `eval.inception_weights`, else from torch hub's
cache, where torch-fidelity and torchmetrics put them; without either, one line says where to put which
file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dcgan.errors import UserError
from dcgan.io.files import file_sha256

NAME = "inception"  # the metrics' suffix: fid_inception, kid_inception
FEATURE_DIM = 2048
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
STANDARD_SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name carries its sha256's first 8 digits
KID_SUBSETS = 100  # KID over 100 subsets of 1000, as torch-fidelity, StyleGAN's metrics and the KID paper


def cached_weights() -> Path:
    """Where torch hub (and so torch-fidelity and torchmetrics) keeps the weights once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_file(configured: str = "") -> Path:
    """The weights to read: `configured` if set, else torch hub's cached copy; a UserError naming the file, where
    it goes and where it comes from when there is none."""
    path = Path(configured).expanduser() if configured else cached_weights()
    if not path.is_file():
        where = f"eval.inception_weights={configured} does not exist" if configured else f"{path} is missing"
        raise UserError(
            f"Inception weights: {where}; download {WEIGHTS_URL} (on a machine with internet) to "
            f"{cached_weights()}, or set eval.inception_weights (dcgan eval: --inception-weights) to its path"
        )
    return path


class InceptionNetwork(nn.Module):
    """[0, 1] images (N, 1 or 3, S, S) of any size -> (N, 2048) Inception pool features; no classes."""

    name = NAME
    feature_dim = FEATURE_DIM
    classes: tuple[str, ...] = ()
    batch_size = 100  # images per forward: ~1 GB of activations at 299 px

    def __init__(self, weights: Path):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:  # tensors only: a file that is not a plain state dict is refused before torch-fidelity unpickles it
            torch.load(weights, map_location="cpu", weights_only=True)
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
            )
        except Exception as e:  # noqa: BLE001 - pickle, zip and state-dict errors all mean "not this network's weights"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{weights} is not a state dict of torch-fidelity's Inception-v3 ({first})") from None
        self.sha256 = file_sha256(weights)
        self.standard = self.sha256.startswith(STANDARD_SHA256_PREFIX)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, 2048), empty logits (N, 0)): the FeatureNetwork interface, without classes."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        pixels = images.mul(255).round().clamp(0, 255).to(torch.uint8)  # as a saved PNG holds them
        features = self.net(pixels)[0]
        return features, features.new_zeros(len(features), 0)
