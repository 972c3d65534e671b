"""Command line: `dcgan train|sample|eval|train-classifier|export|push|gif|curves|config ...`; user mistakes end as
one line on stderr.

A job script cannot learn a worker's exit code from `accelerate launch` or `torchrun` (they exit 1 whenever
a worker fails), so with DCGAN_EXIT_CODE_FILE set, the main process also writes its exit code to that file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dcgan.commands import config, eval, export, plots, sample, train, train_classifier
from dcgan.errors import EXIT_USER_ERROR, Stopped, UserError

MODULES = (train, sample, eval, train_classifier, export, plots, config)  # `dcgan --help` lists them in this order
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    name: run for module in MODULES for name, run in module.COMMANDS.items()
}


def _parser(with_reference: bool = False) -> argparse.ArgumentParser:
    """The CLI; `with_reference` ends `train --help` with every config key."""
    parser = argparse.ArgumentParser(prog="dcgan", description="Train, sample and score GANs on images.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.add_parsers(sub, with_reference)
    return parser


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
        COMMANDS[args.command](args)
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
    """One line on stderr from the first rank: the ranks of a group stop together, for the same reason. Before the
    group forms (a mistake in one machine's command line, say) they have not compared notes, so the first rank
    of each machine speaks for its machine."""
    distributed = sys.modules.get("torch.distributed")
    grouped = distributed is not None and distributed.is_available() and distributed.is_initialized()
    if _is_main() or (not grouped and os.environ.get("LOCAL_RANK", "0") == "0"):
        print(line, file=sys.stderr, flush=True)
