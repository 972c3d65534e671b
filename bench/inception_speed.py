"""Seconds of one Inception-FID evaluation (eval.network=inception) at 28 px and 64 px, generation included.

    python bench/inception_speed.py --num-samples 10000 --threads 2 --json out.json [--size 28|64]

Times exactly what an evaluation does on one process (dcgan/eval/evaluation.py `embed_generated`: G makes
chunks of images, Inception embeds them) for a 28 px grey and a 64 px RGB generator, then the FID and KID
maths against a reference of as many features. The weights are a seeded random network of Inception's
architecture unless --weights names the real file: the arithmetic, and so the time, is the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dcgan import hardware  # noqa: E402
from dcgan.config import Config, ModelConfig  # noqa: E402
from dcgan.eval.evaluation import embed_generated, score  # noqa: E402
from dcgan.eval.inception import InceptionNetwork  # noqa: E402
from dcgan.eval.metrics import mean_and_covariance  # noqa: E402
from dcgan.eval.reference import Reference  # noqa: E402
from dcgan.models import build_models  # noqa: E402
from dcgan.runtime import make_accelerator  # noqa: E402
from helpers.inception_weights import write_random_inception_weights  # noqa: E402

SHAPES = {"28px grey (tutorial G)": (28, 1), "64px RGB (paper G)": (64, 3)}  # model.name=auto picks the G


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--weights", type=Path, help="the real weights file (default: a random network)")
    parser.add_argument("--size", type=int, choices=[size for size, _ in SHAPES.values()], help="one shape only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or write_random_inception_weights(Path(tmp) / "random.pth")
        network = InceptionNetwork(weights)
    accelerator = make_accelerator(Config())
    network.to(accelerator.device)
    results = {"machine": hardware.describe(accelerator.device), "threads": args.threads, "rows": []}
    for label, (size, channels) in SHAPES.items():
        if args.size not in (None, size):
            continue
        torch.manual_seed(0)
        generator = build_models(ModelConfig(), size, channels)[0].eval().to(accelerator.device)
        started = time.perf_counter()
        features, probs, _ = embed_generated(generator, "signed", network, args.num_samples, 0, accelerator)
        embedded = time.perf_counter() - started
        mu, sigma = mean_and_covariance(features)
        reference = Reference(features.flip(0).cpu(), mu.cpu(), sigma.cpu(), torch.zeros(0), torch.zeros(0))
        started = time.perf_counter()
        values = score(features, probs, reference, 0, network.name)
        maths = time.perf_counter() - started
        row = {"shape": label, "num_samples": args.num_samples, "generate_and_embed_s": round(embedded, 1),
               "fid_kid_s": round(maths, 1), "images_per_s": round(args.num_samples / embedded, 1),
               "fid_inception": values["fid_inception"]}  # fmt: skip
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
