"""A randomly initialised Inception-v3 of torch-fidelity's architecture, saved in its weights format.

The real 2015-12-05 weights cannot be downloaded here; this file has the same keys and shapes, so it
exercises the loading path and gives features to check the FID/KID maths with.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Write the state dict of a seeded random Inception-v3 to `path` (torch.save, as torch-fidelity's file)."""
    from torch_fidelity import feature_extractor_inceptionv3 as module

    torch.manual_seed(seed)
    # Build the module without weights: no download, no state dict to load.
    with (
        mock.patch.object(module, "load_state_dict_from_url", return_value={}),
        mock.patch.object(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
    ):
        net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for layer in net.modules():  # He init keeps the activations' scale through 90 layers (the default shrinks it ~0)
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path
