"""Flags and steps shared by the subcommands that run the formula model (predict, evaluate, serve)."""

from __future__ import annotations

import argparse
from typing import Any

MODEL_HELP = "shipped name, model file or ONNX export dir"


def add_model_args(
    parser: argparse.ArgumentParser,
    *,
    ensemble: bool = True,
    device: bool = True,
    threads_help: str = "torch CPU threads (default: all available)",
) -> None:
    """--model (repeatable for an ensemble when `ensemble`), --backend, --device (when `device`), --threads."""
    if ensemble:
        parser.add_argument(
            "--model", action="append", help=f"{MODEL_HELP} (default: default); repeat for an ensemble"
        )
    else:
        parser.add_argument("--model", default="default", help=MODEL_HELP)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="inference backend")
    if device:
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help=threads_help)
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="data.KEY=VALUE",
        help="read images differently from the model file's settings, e.g. data.read_ink_heights=[28,42] "
        "(read at those symbol heights too, keep the most confident reading) or data.ink_height=30",
    )


def add_decode_args(parser: argparse.ArgumentParser) -> None:
    """--beam, --max-len, --batch-size and --workers (image loading threads) for a batch prediction job."""
    parser.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy, default)")
    parser.add_argument("--max-len", type=int, default=200, help="longest output in tokens (default 200)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model batch (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="image loading threads (default 2)")


def model_spec(args: argparse.Namespace) -> str | list[str]:
    """The --model values as `load_model` takes them: one name, or a list for an ensemble."""
    models = args.model or ["default"]
    return models if len(models) > 1 else models[0]


def load_recognizer(args: argparse.Namespace) -> Any:
    """`inference.load_model` with the flags of `add_model_args` (ensemble form, with --device)."""
    from texscribe.inference import load_model

    return load_model(
        model_spec(args),
        device=args.device,
        backend=args.backend,
        num_threads=args.threads,
        data_overrides=args.set,
    )
