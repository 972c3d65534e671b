"""`dcgan gif` and `dcgan curves`: a run's progress GIF, and fid against training time for several runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    gif = sub.add_parser("gif", help="(re)write RUN_DIR/progress.gif from the run's fixed-noise grids")
    gif.add_argument("run_dir", type=Path)
    gif.add_argument("--out", type=Path, help="default: RUN_DIR/progress.gif")

    curves = sub.add_parser("curves", help="plot fid against training time (or step) for one or more runs")
    curves.add_argument("runs", type=Path, nargs="+", help="run folders (their metrics.jsonl)")
    curves.add_argument("--out", type=Path, required=True, help="PNG file to write")
    curves.add_argument("--x", choices=("train_s", "step"), default="train_s", help="x axis (default: train_s)")
    curves.add_argument("--target", type=float, help="also print when each run first reached this fid")


def run_gif(args: argparse.Namespace) -> None:
    from dcgan.run.layout import RunDir
    from dcgan.run.pictures import make_gif

    run = RunDir(args.run_dir)
    out = args.out or run.progress_gif
    frames = make_gif(run.samples, out)
    print(f"wrote {out} ({frames} frames)")


def run_curves(args: argparse.Namespace) -> None:
    from dcgan.run.pictures import plot_quality, time_to

    curves = plot_quality(args.runs, args.out, args.x, args.target)
    print(f"wrote {args.out}")
    if args.target is not None:
        unit = "min" if args.x == "train_s" else "steps"
        for run, curve in zip(args.runs, curves, strict=True):
            reached = time_to(curve, args.target)
            print(f"{run}: {'not reached' if reached is None else f'{reached:.4g} {unit}'} to fid <= {args.target}")


COMMANDS = {"gif": run_gif, "curves": run_curves}
