"""The standard Inception FID/KID (eval.network=inception): torch-fidelity's network read from a weights file, its
maths checked against torch-fidelity's own functions, offline errors, and a run scored with it.

The real weights cannot be downloaded here: a randomly initialised network of the same architecture,
saved in the same format (tests/helpers/inception_weights.py), stands in for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import DATA_ROOT, _env, read_metrics, run_python
from dcgan.errors import UserError
from dcgan.eval.inception import WEIGHTS_FILE, WEIGHTS_URL, InceptionNetwork, weights_file
from dcgan.eval.metrics import frechet_distance, kernel_inception_distance, mean_and_covariance
from helpers.inception_weights import write_random_inception_weights


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


@pytest.mark.slow
def test_features_and_fid_kid_match_torch_fidelity(random_weights):
    """Our features are torch-fidelity's extractor on the uint8 RGB images (grey repeated to 3 channels), and
    FID and KID computed on them agree with torch-fidelity's functions to 1e-6 relative."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    network = InceptionNetwork(random_weights)
    assert not network.standard
    stream = torch.Generator().manual_seed(0)
    grey = torch.rand(16, 1, 28, 28, generator=stream)
    rgb = torch.rand(16, 3, 64, 64, generator=stream).pow(2)  # another distribution, another size
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=random_weights)
    as_uint8 = grey.mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    real, fake = network.features_and_logits(grey)[0], network.features_and_logits(rgb)[0]
    assert torch.equal(real, theirs(as_uint8)[0])
    assert real.shape == (16, 2048) and real.std(0).mean() > 1e-3  # not a degenerate network

    ours = frechet_distance(*mean_and_covariance(real), *mean_and_covariance(fake))
    reference = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    assert ours == pytest.approx(reference["frechet_inception_distance"], rel=1e-6)
    # One subset of every image: the subset draws (ours torch, theirs numpy) then do not matter.
    kid, _ = kernel_inception_distance(real, fake, subsets=1, subset_size=16)
    kwargs = dict(kid_subsets=1, kid_subset_size=16, kid_degree=3, kid_gamma=None, kid_coef0=1, rng_seed=0)
    theirs_kid = kid_features_to_metric(real.double(), fake.double(), verbose=False, **kwargs)
    assert kid == pytest.approx(theirs_kid["kernel_inception_distance_mean"], rel=1e-6)


def test_missing_weights_name_the_file_where_it_goes_and_its_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as missing:
        weights_file("")
    message = str(missing.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE) in message and WEIGHTS_URL in message
    with pytest.raises(UserError, match="eval.inception_weights=/no/such.pth does not exist"):
        weights_file("/no/such.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="is not a state dict of torch-fidelity's Inception-v3"):
        InceptionNetwork(tmp_path / "junk.pth")


def test_a_run_that_needs_missing_weights_refuses_at_start(tmp_path):
    env = {**_env(), "TORCH_HOME": str(tmp_path / "torch")}
    command = [sys.executable, "train.py", "--config", "configs/smoke.yaml", f"output_dir={tmp_path / 'run'}",
               f"data.root={DATA_ROOT}", "log.tracker=none", "eval.every_epochs=1",
               "eval.network=inception"]  # fmt: skip
    proc = run_python(command, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and WEIGHTS_URL in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before training, not after an epoch


@pytest.mark.slow
def test_a_run_scored_with_inception_and_dcgan_eval_agree(tmp_path, fashion_pngs, random_weights):
    """A grey 28 px folder run evaluated in Inception space logs fid_inception and kid_inception, caches the
    real images' statistics under the network's name, and `dcgan eval RUN` (the run's eval settings) gives the same
    numbers for the same generator, and says how many images it scored against which real ones."""
    root = fashion_pngs[0]
    env = {**_env(), "DCGAN_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "run"
    proc = run_python([sys.executable, "train.py", "--config", "configs/smoke.yaml", f"output_dir={run}",
                       "log.tracker=none", "data.name=folder", f"data.root={root}", "data.limit=48", "model.width=8",
                       "eval.every_epochs=2", "eval.num_samples=100", "eval.network=inception",
                       f"eval.inception_weights={random_weights}"], env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not the standard 2015-12-05 ones" in proc.stdout
    logged = [row for row in read_metrics(run) if "eval/fid_inception" in row][-1]
    assert logged["eval/fid_inception"] > 0 and "eval/fid_mnist" not in logged and "eval/kid_inception" in logged
    assert len(list((tmp_path / "cache").glob("folder-train-*-inception-*.safetensors"))) == 1

    out = tmp_path / "eval.json"
    # No --network or --inception-weights: `dcgan eval` takes the run's eval.network and its weights file.
    proc = run_python([sys.executable, "-m", "dcgan", "eval", str(run), "--num-samples", "100",
                       "--out", str(out)], env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("fid_inception", "kid_inception"):
        assert result[key] == pytest.approx(logged[f"eval/{key}"], rel=1e-6), key
    assert result["reference"] == "folder training images (48 images)" and result["num_samples"] == 100
    assert "scored 100 images against the folder training images (48 images)" in proc.stderr


def test_eval_network_is_one_of_its_choices(tmp_path):
    """eval.network is checked like every key: a wrong value is one line naming the choices."""
    proc = run_python([sys.executable, "train.py", "--config", "configs/smoke.yaml", f"output_dir={tmp_path}",
                       "eval.network=vgg"])  # fmt: skip
    assert proc.returncode == 2 and "eval.network" in proc.stderr and "dataset, inception" in proc.stderr


def test_scores_in_inception_space_are_fid_and_kid_only_and_nan_for_a_diverged_g():
    from dcgan.eval.evaluation import logged_keys, score
    from dcgan.eval.reference import Reference

    stream = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 8, generator=stream), torch.randn(300, 8, generator=stream) + 0.5
    reference = Reference(real, *mean_and_covariance(real), torch.zeros(0, dtype=torch.float64), torch.zeros(0))
    values = score(fake, fake.new_zeros(300, 0), reference, network="inception")
    assert logged_keys("inception") == ("fid_inception", "kid_inception")
    assert values["fid_inception"] == pytest.approx(
        frechet_distance(*mean_and_covariance(fake), reference.mu, reference.sigma)
    )
    assert values["kid_inception"] > 0 and "is_inception" not in values and "precision" not in values
    fake[0, 0] = float("nan")
    diverged = score(fake, fake.new_zeros(300, 0), reference, network="inception")
    assert all(diverged[k] != diverged[k] for k in ("fid_inception", "kid_inception", "kid_inception_std"))


def test_real_images_of_a_folder_need_their_size():
    from dcgan.eval.offline import evaluate_real

    with pytest.raises(UserError, match="pass --image-size and --channels"):
        evaluate_real(dataset="folder", data_root="anywhere", network="inception")
