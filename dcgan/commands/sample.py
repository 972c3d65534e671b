"""`dcgan sample`: images from a generator as numbered PNGs, a PNG grid or a .npy array, and latent walks (also
as a GIF)."""

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
        "--out",
        required=True,
        help="DIR/ (numbered PNGs, for FID tools), FILE.png (grid), FILE.npy (uint8 array); a walk also FILE.gif",
    )
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--truncation", type=float, help="redraw noise values beyond +-T: cleaner, less varied images")
    sample.add_argument("--class", dest="wanted", metavar="K", help="conditional G: draw only class K (index or name)")
    sample.add_argument("--per-class", action="store_true", help="conditional G: N of each class, a grid row each")
    walk = sample.add_argument_group("latent walks (a loop that returns to its start; .png: one row per segment)")
    walk.add_argument("--interpolate", type=int, metavar="K", help="walk through K random latent points (slerp)")
    walk.add_argument(
        "--interpolate-classes", action="store_true", help="conditional G: walk through every class at fixed noise"
    )
    walk.add_argument("--frames", type=int, default=16, help="frames from one point to the next (default 16)")
    walk.add_argument("--fps", type=float, default=12, help="GIF frames per second (default 12)")


def run(args: argparse.Namespace) -> None:
    from dcgan.io.images import write_samples
    from dcgan.models.file import class_names
    from dcgan.models.sampling import generate
    from dcgan.run.export import local_source
    from dcgan.run.layout import load_generator_and_metadata

    args.source = local_source(args.source)
    if args.interpolate is not None or args.interpolate_classes:
        return walk(args)
    if str(args.out).lower().endswith(".gif"):
        raise UserError("--out FILE.gif is for a latent walk: add --interpolate K (or --interpolate-classes)")
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


def walk(args: argparse.Namespace) -> None:
    """`dcgan sample --interpolate K | --interpolate-classes`: the frames of a latent walk as a GIF, a grid with one
    row per segment, numbered PNGs or an array."""
    import torch

    from dcgan.io.images import save_animation, write_samples
    from dcgan.models.file import class_names
    from dcgan.models.sampling import render, sample_noise
    from dcgan.models.walks import class_walk, noise_walk
    from dcgan.run.layout import load_generator_and_metadata

    if args.interpolate is not None and args.interpolate_classes:
        raise UserError("--interpolate K walks through noise, --interpolate-classes through classes: choose one")
    if args.interpolate is not None and args.interpolate < 2:
        raise UserError("--interpolate K needs at least 2 points")
    if args.frames < 1 or args.fps <= 0 or (args.truncation is not None and args.truncation <= 0):
        raise UserError("--frames must be >= 1, --fps and --truncation > 0")
    if args.n is not None or args.per_class:
        raise UserError("--n and --per-class do not apply to a walk: its length is points x --frames")
    generator, meta = load_generator_and_metadata(args.source)
    classes, pixel_range = class_names(generator, meta), meta.get("pixel_range", "signed")
    if args.interpolate_classes:
        if not classes:
            raise UserError("--interpolate-classes needs a conditional generator (model.conditional=true)")
        if args.wanted is not None:
            raise UserError("--class fixes the class; --interpolate-classes walks through all of them: choose one")
        vectors = class_walk(generator, args.frames)
        noise = sample_noise(1, generator.z_dim, torch.Generator().manual_seed(args.seed), args.truncation)
        frames = render(generator, noise.expand(len(vectors), -1), pixel_range, class_vectors=vectors)
        what = f"through its {len(classes)} classes ({', '.join(classes)}) at fixed noise"
    else:
        noise = noise_walk(generator.z_dim, args.interpolate, args.frames, args.seed, args.truncation)
        labels, what = None, f"through {args.interpolate} random latent points"
        if classes:
            if args.wanted is None:  # one class for the whole walk, chosen from the seed
                stream = torch.Generator().manual_seed(args.seed)
                args.wanted = str(int(torch.randint(len(classes), (1,), generator=stream)))
            labels = requested_labels(classes, len(noise), args.wanted, False)[0]
            what += f", class {classes[int(labels[0])]} (--class chooses)"
        frames = render(generator, noise, pixel_range, labels)
    out = Path(args.out)
    if out.suffix.lower() == ".gif":
        print(f"wrote {save_animation(frames, out, args.fps)}: a walk {what}")
    else:
        print(f"wrote {write_samples(frames, args.out, args.frames)}: a walk {what}")


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
