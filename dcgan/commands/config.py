"""`dcgan config`: the resolved config (YAML), one value of it for job scripts, or the reference of every key."""

from __future__ import annotations

import argparse

from dcgan.errors import UserError


def add_parsers(sub: argparse._SubParsersAction, with_reference: bool) -> None:
    config = sub.add_parser(
        "config", help="print the resolved config (YAML), one value with --get, or every key with --describe"
    )
    config.add_argument("--config", help="YAML recipe (default: built-in defaults)")
    config.add_argument("--get", metavar="KEY", help="print only this dotted key, e.g. output_dir")
    config.add_argument("--describe", action="store_true", help="every key: type, default, resume policy, meaning")
    config.add_argument("--markdown", action="store_true", help="with --describe: as docs/config.md")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as for train")


def run(args: argparse.Namespace) -> None:
    import yaml

    if args.describe:
        from dcgan.config.describe import as_markdown, as_text

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


COMMANDS = {"config": run}
