"""The `texscribe` command: one entry point, one subcommand per job.

    texscribe predict     recognise images of formulas            texscribe/commands/predict.py
    texscribe evaluate    score a model on a prepared dataset     texscribe/commands/evaluate.py
    texscribe data ...    prepare, inspect and render datasets    texscribe/commands/data.py
    texscribe train       train a model from a config preset      texscribe/commands/train.py
    texscribe finetune    adapt a model to new data / new tokens  texscribe/commands/finetune.py
    texscribe export      write a model as ONNX                   texscribe/commands/export.py
    texscribe serve       the REST API and web page               texscribe/commands/serve.py
    texscribe digits ...  the MNIST digit classifiers             texscribe/commands/digits.py

Each subcommand is a module in `texscribe/commands/` (listed in `COMMAND_MODULES`) with
`register(subparsers)`, which adds its parser and sets `func=handler(args) -> int`; the handler only
parses and calls library functions (flags shared by several commands: `commands/common.py`).
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
