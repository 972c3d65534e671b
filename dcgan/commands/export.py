"""`dcgan export` and `dcgan push`: a run's generator as a self-describing model folder, and on the Hugging Face Hub."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    export = sub.add_parser("export", help="write a self-describing model folder (Hugging Face Hub layout)")
    export.add_argument("source", type=Path, help="a run folder, checkpoint folder or generator file")
    export.add_argument("out_dir", type=Path, help="folder to write: model.safetensors, config.json, README.md")

    push = sub.add_parser("push", help="export a run and upload it to the Hugging Face Hub")
    push.add_argument("source", type=Path, help="a run folder, checkpoint folder or generator file")
    push.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME of the model repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")


def run_export(args: argparse.Namespace) -> None:
    from dcgan.run.export import export_model

    print(f"wrote {export_model(args.source, args.out_dir)}: model.safetensors, config.json, README.md, samples.png")


def run_push(args: argparse.Namespace) -> None:
    from dcgan.run.export import push

    print(f"pushed {args.source} to {push(args.source, args.repo_id, args.private)}")


COMMANDS = {"export": run_export, "push": run_push}
