"""Command line: `dcgan train|sample|gif|config ...`; user mistakes end as one line on stderr, not a traceback.

A job script cannot learn a worker's exit code from `accelerate launch` or `torchrun` (they exit 1 whenever
a worker fails), so with DCGAN_EXIT_CODE_FILE set, the main process also writes its exit code to that file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dcgan.errors import EXIT_USER_ERROR, Stopped, UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcgan", description="Train and sample the DCGAN on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train (also under `accelerate launch`)")
    train.add_argument("--config", help="YAML recipe, e.g. configs/mnist.yaml (default: built-in defaults)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=5")

    sample = sub.add_parser("sample", help="write generated digits as a PNG grid or a .npy array")
    sample.add_argument("source", type=Path, help="a run folder or a generator.safetensors file")
    sample.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    sample.add_argument("--out", type=Path, required=True, help="FILE.png (grid) or FILE.npy (uint8 N x 28 x 28)")
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")

    gif = sub.add_parser("gif", help="(re)write RUN_DIR/progress.gif from the run's fixed-noise grids")
    gif.add_argument("run_dir", type=Path)
    gif.add_argument("--out", type=Path, help="default: RUN_DIR/progress.gif")

    config = sub.add_parser("config", help="print the resolved config (YAML), or one value with --get")
    config.add_argument("--config", help="YAML recipe (default: built-in defaults)")
    config.add_argument("--get", metavar="KEY", help="print only this dotted key, e.g. output_dir")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as for train")
    return parser


def _train(args: argparse.Namespace) -> None:
    from dcgan.config import load_config
    from dcgan.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    Trainer(cfg).fit()


def _sample(args: argparse.Namespace) -> None:
    from dcgan.sampling import generate, load_generator, write_samples

    if args.n < 1:
        raise UserError("--n must be at least 1")
    generator, pixel_range = load_generator(args.source)
    write_samples(generate(generator, args.n, args.seed, pixel_range), args.out)
    print(f"wrote {args.n} samples to {args.out}")


def _gif(args: argparse.Namespace) -> None:
    from dcgan.pictures import make_gif

    out = args.out or args.run_dir / "progress.gif"
    frames = make_gif(args.run_dir / "samples", out)
    print(f"wrote {out} ({frames} frames)")


def _config(args: argparse.Namespace) -> None:
    import yaml

    from dcgan.config import load_config, to_dict

    value = to_dict(load_config(args.config, args.overrides))
    for part in args.get.split(".") if args.get else ():
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"unknown config key {args.get}")
        value = value[part]
    # Text as is, so job scripts can use it (RUN_DIR=$(dcgan config --get output_dir ...)); the rest as YAML.
    print(value if isinstance(value, str) else yaml.safe_dump(value, sort_keys=False).removesuffix("...\n").strip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = _run(args)
    if os.environ.get("DCGAN_EXIT_CODE_FILE") and _is_main():
        try:
            Path(os.environ["DCGAN_EXIT_CODE_FILE"]).write_text(f"{code}\n")
        except OSError as e:
            _say(f"dcgan: warning: cannot write DCGAN_EXIT_CODE_FILE ({e.strerror}: {e.filename})")
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        {"train": _train, "sample": _sample, "gif": _gif, "config": _config}[args.command](args)
    except UserError as e:
        _say(f"dcgan: error: {e}")
        return EXIT_USER_ERROR
    except Stopped as e:
        _say(f"dcgan: stopped: {e}")
        return e.exit_code
    return 0


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _say(line: str) -> None:
    # Every rank of a launch stops the same way; one line from the first is enough.
    if _is_main():
        print(line, file=sys.stderr, flush=True)
