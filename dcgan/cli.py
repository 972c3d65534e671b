"""Command line: `dcgan train|sample|eval|export|push|gif|curves|config|train-classifier ...`; user mistakes end as one
line on stderr.

A job script cannot learn a worker's exit code from `accelerate launch` or `torchrun` (they exit 1 whenever
a worker fails), so with DCGAN_EXIT_CODE_FILE set, the main process also writes its exit code to that file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dcgan.errors import EXIT_USER_ERROR, Stopped, UserError

DATASETS = ("mnist", "fashion_mnist", "folder")  # data.name's choices (dcgan.config imports yaml: not here)


def _parser(with_reference: bool = False) -> argparse.ArgumentParser:
    """The CLI; `with_reference` ends `train --help` with every config key (built only when asked: it parses
    dcgan/config.py, and every training process goes through here)."""
    parser = argparse.ArgumentParser(prog="dcgan", description="Train, sample and score GANs on images.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train (also under `accelerate launch`)",
        epilog=_config_reference() if with_reference else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="YAML recipe, e.g. configs/mnist.yaml (default: built-in defaults)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=5")

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
    evaluate.add_argument("--dataset", choices=DATASETS, help="with --real: which data (default: mnist)")
    evaluate.add_argument("--out", type=Path, help="JSON file to write (default: eval.json beside the generator)")

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

    export = sub.add_parser("export", help="write a self-describing model folder (Hugging Face Hub layout)")
    export.add_argument("source", type=Path, help="a run folder, checkpoint folder or generator file")
    export.add_argument("out_dir", type=Path, help="folder to write: model.safetensors, config.json, README.md")

    push = sub.add_parser("push", help="export a run and upload it to the Hugging Face Hub")
    push.add_argument("source", type=Path, help="a run folder, checkpoint folder or generator file")
    push.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME of the model repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")

    gif = sub.add_parser("gif", help="(re)write RUN_DIR/progress.gif from the run's fixed-noise grids")
    gif.add_argument("run_dir", type=Path)
    gif.add_argument("--out", type=Path, help="default: RUN_DIR/progress.gif")

    curves = sub.add_parser("curves", help="plot fid against training time (or step) for one or more runs")
    curves.add_argument("runs", type=Path, nargs="+", help="run folders (their metrics.jsonl)")
    curves.add_argument("--out", type=Path, required=True, help="PNG file to write")
    curves.add_argument("--x", choices=("train_s", "step"), default="train_s", help="x axis (default: train_s)")
    curves.add_argument("--target", type=float, help="also print when each run first reached this fid")

    config = sub.add_parser(
        "config", help="print the resolved config (YAML), one value with --get, or every key with --describe"
    )
    config.add_argument("--config", help="YAML recipe (default: built-in defaults)")
    config.add_argument("--get", metavar="KEY", help="print only this dotted key, e.g. output_dir")
    config.add_argument("--describe", action="store_true", help="every key: type, default, resume policy, meaning")
    config.add_argument("--markdown", action="store_true", help="with --describe: as docs/config.md")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as for train")
    return parser


def _config_reference() -> str:
    from dcgan.configdoc import as_text

    return as_text()


def _train(args: argparse.Namespace) -> None:
    from dcgan import peers
    from dcgan.config import load_config
    from dcgan.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    with peers.watch(Path(cfg.output_dir) / "checkpoints"):
        Trainer(cfg).fit()


def _local_source(source: Path | None) -> Path | None:
    """`source` as given, or the local snapshot of Hub model USER/NAME when no such path exists."""
    if source is None or source.exists() or len(source.parts) != 2:
        return source
    from dcgan.export import cache_hint, from_hub_cache

    snapshot = from_hub_cache(str(source))
    if snapshot is None:
        raise UserError(cache_hint(str(source)))
    return snapshot


def _sample(args: argparse.Namespace) -> None:
    from dcgan.sampling import class_names, generate, load_generator_and_metadata, requested_labels, write_samples

    args.source = _local_source(args.source)
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


def _eval(args: argparse.Namespace) -> None:
    import json

    from dcgan.eval_cli import eval_output, evaluate, evaluate_real

    if (args.source is None) == (not args.real):
        raise UserError("pass a run folder or generator file, or --real (not both)")
    args.source = _local_source(args.source)
    if args.num_samples < 100 or (args.truncation is not None and args.truncation <= 0):
        raise UserError("--num-samples must be >= 100 and --truncation > 0")
    if args.dataset and not args.real:
        raise UserError("--dataset goes with --real; a generator is scored against the data it was trained on")
    out = eval_output(args.source, args.out)
    if args.real:
        result = evaluate_real(args.num_samples, args.seed, args.dataset, args.data_root or "data", args.classifier)
    else:
        result = evaluate(args.source, args.num_samples, args.seed, args.data_root, args.classifier, args.truncation)
    if result is not None:  # the main process
        text = json.dumps(result, indent=1)
        out.write_text(text + "\n")
        print(text)
        print(f"wrote {out}", file=sys.stderr)


def _train_classifier(args: argparse.Namespace) -> None:
    from dcgan.classifier_train import Recipe, train_classifier
    from dcgan.config import load_config

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


def _export(args: argparse.Namespace) -> None:
    from dcgan.export import export_model

    print(f"wrote {export_model(args.source, args.out_dir)}: model.safetensors, config.json, README.md, samples.png")


def _push(args: argparse.Namespace) -> None:
    from dcgan.export import push

    print(f"pushed {args.source} to {push(args.source, args.repo_id, args.private)}")


def _gif(args: argparse.Namespace) -> None:
    from dcgan.pictures import make_gif
    from dcgan.rundir import RunDir

    run = RunDir(args.run_dir)
    out = args.out or run.progress_gif
    frames = make_gif(run.samples, out)
    print(f"wrote {out} ({frames} frames)")


def _curves(args: argparse.Namespace) -> None:
    from dcgan.pictures import plot_quality, time_to

    curves = plot_quality(args.runs, args.out, args.x, args.target)
    print(f"wrote {args.out}")
    if args.target is not None:
        unit = "min" if args.x == "train_s" else "steps"
        for run, curve in zip(args.runs, curves, strict=True):
            reached = time_to(curve, args.target)
            print(f"{run}: {'not reached' if reached is None else f'{reached:.4g} {unit}'} to fid <= {args.target}")


def _config(args: argparse.Namespace) -> None:
    import yaml

    if args.describe:
        from dcgan.configdoc import as_markdown, as_text

        print(as_markdown() if args.markdown else as_text(), end="")
        return
    from dcgan.config import load_config, to_dict

    value = to_dict(load_config(args.config, args.overrides))
    for part in args.get.split(".") if args.get else ():
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"unknown config key {args.get}")
        value = value[part]
    # Text as is, so job scripts can use it (RUN_DIR=$(dcgan config --get output_dir ...)); the rest as YAML.
    print(value if isinstance(value, str) else yaml.safe_dump(value, sort_keys=False).removesuffix("...\n").strip())


_COMMANDS = {
    "train": _train,
    "sample": _sample,
    "eval": _eval,
    "gif": _gif,
    "curves": _curves,
    "export": _export,
    "push": _push,
    "config": _config,
    "train-classifier": _train_classifier,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(with_reference=bool({"-h", "--help"} & set(argv))).parse_args(argv)
    code = _run(args)
    if os.environ.get("DCGAN_EXIT_CODE_FILE") and _is_main():
        try:
            Path(os.environ["DCGAN_EXIT_CODE_FILE"]).write_text(f"{code}\n")
        except OSError as e:
            _say(f"dcgan: warning: cannot write DCGAN_EXIT_CODE_FILE ({e.strerror}: {e.filename})")
    distributed = sys.modules.get("torch.distributed")
    if (
        args.command == "train"
        and distributed is not None
        and distributed.is_available()
        and distributed.is_initialized()
    ):
        from dcgan.distributed import end_process

        end_process(code)  # a rank of a multi-process run (why: dcgan/distributed.py)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        _COMMANDS[args.command](args)
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
