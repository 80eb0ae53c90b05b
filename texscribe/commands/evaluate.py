"""`texscribe evaluate --model M --data DIR`: metrics, breakdowns and a report on a prepared dataset."""

from __future__ import annotations

import argparse

from texscribe.commands.common import add_decode_args, add_model_args, load_recognizer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a prepared dataset (ExpRate, <=1/<=2 errors, BLEU-4, edit score, CER/WER)",
        description="Predict every record of a prepared dataset (`texscribe data prepare`) and write "
        "predictions.tsv, metrics.json, report.md (breakdowns by length and structure, worst errors with "
        "their images) and plots/accuracy_by_length.png into --out.",
    )
    add_model_args(parser)
    add_decode_args(parser)
    parser.add_argument("--data", required=True, metavar="PREPARED_DIR", help="prepared dataset folder")
    parser.add_argument("--out", default=None, help="output folder (default: eval/<dataset name>)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N records")
    parser.add_argument("--worst", type=int, default=20, help="worst errors shown in the report (default 20)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from texscribe.evaluation import evaluate
    from texscribe.evaluation.report import summary_rows

    recognizer = load_recognizer(args)
    out = Path(args.out) if args.out else Path("eval") / Path(args.data).resolve().name
    result = evaluate(
        recognizer,
        args.data,
        out,
        beam=args.beam,
        limit=args.limit,
        batch_size=args.batch_size,
        max_len=args.max_len,
        workers=args.workers,
        progress=not args.no_progress,
        n_worst=args.worst,
    )
    rows = summary_rows(result.metrics)
    if result.skipped:
        rows.append(("skipped (unreadable)", str(len(result.skipped))))
    rows.append(("time", f"{result.seconds:.1f} s"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    print(f"wrote {out}/ (predictions.tsv, metrics.json, report.md, plots/, errors/)")
    return 0
