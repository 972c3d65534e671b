"""`dcgan eval`: the sample-quality metrics of a generator, or of real training images, as JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dcgan.errors import UserError

DATASETS = ("mnist", "fashion_mnist", "folder", "hf")  # data.name's choices (dcgan.config imports yaml: not here)
NETWORKS = ("dataset", "inception")  # eval.network's choices


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    evaluate = sub.add_parser("eval", help="sample-quality metrics (fid_<network>, KID, IS, coverage, P/R) as JSON")
    evaluate.add_argument(
        "source", type=Path, nargs="?", help="run, checkpoint or exported folder, generator file, or USER/NAME"
    )
    evaluate.add_argument("--real", action="store_true", help="score real training images instead (the floor)")
    evaluate.add_argument("--num-samples", type=int, default=10_000, help="images to score (default 10000)")
    evaluate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    evaluate.add_argument("--truncation", type=float, help="as for sample")
    evaluate.add_argument("--data-root", help="the data's root (default: the run's data.root, else data)")
    evaluate.add_argument("--classifier", default="", help="feature network file (default: the run's, else shipped)")
    evaluate.add_argument(
        "--network", choices=NETWORKS,
        help="dataset: the data's feature network (fid_mnist, ...); inception: the standard Inception FID/KID "
        "(default: the run's eval.network, else dataset)",
    )  # fmt: skip
    evaluate.add_argument(
        "--inception-weights", default="", help="Inception's weights file (default: the run's, else torch hub's cache)"
    )
    evaluate.add_argument("--dataset", choices=DATASETS, help="with --real: which data (default: mnist)")
    evaluate.add_argument("--image-size", type=int, help="with --real --dataset folder|hf: the size to read it at")
    evaluate.add_argument("--channels", type=int, choices=(1, 3), help="with --real --dataset folder|hf: 1 or 3")
    evaluate.add_argument("--out", type=Path, help="JSON file to write (default: eval.json beside the generator)")


def run(args: argparse.Namespace) -> None:
    import json

    from dcgan.eval.offline import eval_output, evaluate, evaluate_real
    from dcgan.run.export import local_source

    if (args.source is None) == (not args.real):
        raise UserError("pass a run folder or generator file, or --real (not both)")
    args.source = local_source(args.source)
    if args.num_samples < 100 or (args.truncation is not None and args.truncation <= 0):
        raise UserError("--num-samples must be >= 100 and --truncation > 0")
    if (args.dataset or args.image_size or args.channels) and not args.real:
        raise UserError(
            "--dataset, --image-size and --channels go with --real; a generator is scored against its own data"
        )
    if (args.image_size is None) != (args.channels is None):
        raise UserError("--image-size and --channels go together")
    out = eval_output(args.source, args.out)
    network = {"network": args.network, "inception_weights": args.inception_weights}
    if args.real:
        root = args.data_root or "data"
        shape = (args.image_size, args.channels) if args.image_size else None
        network["network"] = args.network or "dataset"
        result = evaluate_real(args.num_samples, args.seed, args.dataset, root, args.classifier, **network, shape=shape)
    else:
        result = evaluate(
            args.source, args.num_samples, args.seed, args.data_root, args.classifier, args.truncation, **network
        )
    if result is not None:  # the main process
        text = json.dumps(result, indent=1)
        out.write_text(text + "\n")
        print(text)
        print(f"scored {result['num_samples']} images against the {result['reference']}; wrote {out}", file=sys.stderr)


COMMANDS = {"eval": run}
