"""`dcgan sample`: images from a generator as numbered PNGs, a PNG grid or a .npy array."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan.errors import UserError

if TYPE_CHECKING:
    import torch


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    sample = sub.add_parser("sample", help="write generated images as PNG files, a PNG grid or a .npy array")
    sample.add_argument(
        "source", type=Path, help="a run folder, a generator file, an exported folder, or USER/NAME from the HF cache"
    )
    sample.add_argument("--n", type=int, help="number of images (default 64; with --per-class, of each class: 8)")
    sample.add_argument(
        "--out", required=True, help="DIR/ (numbered PNGs, for FID tools), FILE.png (grid) or FILE.npy (uint8 array)"
    )
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--truncation", type=float, help="redraw noise values beyond +-T: cleaner, less varied images")
    sample.add_argument("--class", dest="wanted", metavar="K", help="conditional G: draw only class K (index or name)")
    sample.add_argument("--per-class", action="store_true", help="conditional G: N of each class, a grid row each")


def run(args: argparse.Namespace) -> None:
    from dcgan.io.images import write_samples
    from dcgan.models.file import class_names
    from dcgan.models.sampling import generate
    from dcgan.run.export import local_source
    from dcgan.run.layout import load_generator_and_metadata

    args.source = local_source(args.source)
    n = args.n if args.n is not None else 8 if args.per_class else 64
    if n < 1:
        raise UserError("--n must be at least 1")
    if args.truncation is not None and args.truncation <= 0:
        raise UserError("--truncation must be > 0")
    generator, meta = load_generator_and_metadata(args.source)
    labels, columns = requested_labels(class_names(generator, meta), n, args.wanted, args.per_class)
    images = generate(generator, len(labels) if labels is not None else n, args.seed, meta.get("pixel_range", "signed"),
                      args.truncation, labels)  # fmt: skip
    print(f"wrote {write_samples(images, args.out, columns)}")


def requested_labels(
    classes: tuple[str, ...], n: int, wanted: str | None, per_class: bool
) -> tuple[torch.Tensor | None, int | None]:
    """(class indices to draw, grid columns) for `dcgan sample`: class `wanted` (index or name) n times, or
    with `per_class` n of each class in one row per class; (None, None) leaves the classes uniform."""
    if not classes:
        if wanted is not None or per_class:
            raise UserError("--class and --per-class need a conditional generator (model.conditional=true)")
        return None, None
    import torch

    from dcgan.models.sampling import per_class_labels

    if per_class:
        return per_class_labels(len(classes), n), n
    if wanted is None:
        return None, None
    if wanted in classes:
        return torch.full((n,), classes.index(wanted)), None
    if wanted.isdigit() and int(wanted) < len(classes):
        return torch.full((n,), int(wanted)), None
    shown = ", ".join(f"{i} ({name})" for i, name in enumerate(classes))
    raise UserError(f"--class {wanted}: not one of this generator's classes: {shown}")


COMMANDS = {"sample": run}
