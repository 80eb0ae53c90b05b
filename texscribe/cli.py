"""The `texscribe` command: one entry point, one subcommand per job.

Each subcommand lives next to the library code it drives, in a module with
`register(subparsers)`; that function adds its parser and sets `func=handler(args) -> int`.
Modules are imported when the CLI starts, so they must keep heavy imports (torch, lightning)
inside their handlers: `texscribe --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from texscribe import __version__
from texscribe.errors import TexscribeError

# subcommand modules, in the order `--help` lists them
COMMAND_MODULES = [
    "texscribe.commands.predict",
    "texscribe.commands.evaluate",
    "texscribe.commands.data",
    "texscribe.commands.train",
    "texscribe.commands.finetune",
    "texscribe.commands.export",
    "texscribe.commands.serve",
    "texscribe.commands.digits",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="texscribe", description="Images of math to LaTeX.")
    parser.add_argument("--version", action="version", version=f"texscribe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that subcommand is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TexscribeError as exc:
        print(f"texscribe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
