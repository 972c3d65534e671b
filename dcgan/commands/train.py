"""`dcgan train` (and `python train.py`, under any launcher): train to the configured length."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    """`with_reference` ends `train --help` with every config key (built only when asked: it parses the config's
    source, and every training process goes through here)."""
    train = sub.add_parser(
        "train",
        help="train (also under `accelerate launch`)",
        epilog=_config_reference() if with_reference else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="YAML recipe, e.g. configs/mnist.yaml (default: built-in defaults)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=5")


def _config_reference() -> str:
    from dcgan.config.describe import as_text

    return as_text()


def run(args: argparse.Namespace) -> None:
    from dcgan.config import load_config
    from dcgan.distributed import watch
    from dcgan.run import checkpoint
    from dcgan.run.layout import RunDir
    from dcgan.train.loop import Trainer

    cfg = load_config(args.config, args.overrides)
    with watch(lambda: checkpoint.latest_valid(RunDir(Path(cfg.output_dir)).checkpoints)):
        Trainer(cfg).fit()


COMMANDS = {"train": run}
