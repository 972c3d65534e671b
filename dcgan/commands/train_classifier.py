"""`dcgan train-classifier`: the feature network behind fid_<network> and the other metrics, for a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from dcgan.commands.eval import DATASETS
from dcgan.errors import UserError


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    clf = sub.add_parser("train-classifier", help="train the feature network behind fid_<network> and friends")
    clf.add_argument("--dataset", choices=DATASETS, default="mnist", help="folder: labelled subfolders of --data-root")
    clf.add_argument("--data-root", default="data", help="the data's root, as data.root (default: data)")
    clf.add_argument("--image-size", type=int, default=28, help="folder: image size, as data.image_size")
    clf.add_argument("--channels", type=int, default=1, help="folder: 1 or 3, as data.channels")
    clf.add_argument("--name", default="", help="what its metrics are called, fid_NAME (default: the dataset)")
    clf.add_argument("--out", type=Path, help="weights file to write (default: DATASET_classifier.safetensors)")
    clf.add_argument("--seed", type=int, default=0)
    clf.add_argument("--epochs", type=int, default=5)
    clf.add_argument("--batch-size", type=int, default=128)
    clf.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    clf.add_argument("--threads", type=int, default=1, help="torch threads (rounding depends on it)")
    clf.add_argument("--limit", type=int, default=0, help="train on the first N images only (0 = all)")


def run(args: argparse.Namespace) -> None:
    from dcgan.config import load_config
    from dcgan.eval.train_network import Recipe, train_classifier

    if min(args.epochs, args.batch_size, args.threads) < 1 or args.lr <= 0:
        raise UserError("--epochs, --batch-size and --threads must be >= 1, --lr > 0")
    data = load_config(None, [  # validated as a training run's data is
        f"data.name={args.dataset}", f"data.root={args.data_root}", f"data.image_size={args.image_size}",
        f"data.channels={args.channels}", f"data.limit={args.limit}",
    ]).data  # fmt: skip
    out = args.out or Path(f"{args.name or args.dataset}_classifier.safetensors")
    recipe = Recipe(args.seed, args.epochs, args.batch_size, args.lr, args.threads)
    training = train_classifier(data, out, recipe, args.name)
    print(f"wrote {out} (test accuracy {training['test_accuracy']:.2%})")


COMMANDS = {"train-classifier": run}
