"""`texscribe evaluate --model M --data DIR`: metrics, breakdowns and a report on a prepared dataset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a prepared dataset (ExpRate, <=1/<=2 errors, BLEU-4, edit score, CER/WER)",
        description="Predict every record of a prepared dataset (`texscribe data prepare`) and write "
        "predictions.tsv, metrics.json, report.md (breakdowns by length and structure, worst errors with "
        "their images) and plots/accuracy_by_length.png into --out.",
    )
    parser.add_argument("--model", action="append", help="shipped name, model file or ONNX export dir "
                        "(default: default); repeat for an ensemble")  # fmt: skip
    parser.add_argument("--data", required=True, metavar="PREPARED_DIR", help="prepared dataset folder")
    parser.add_argument("--out", default=None, help="output folder (default: eval/<dataset name>)")
    parser.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy, default)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N records")
    parser.add_argument("--max-len", type=int, default=200, help="longest output in tokens (default 200)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model batch (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="image loading threads (default 2)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="inference backend")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all available)"
    )
    parser.add_argument("--worst", type=int, default=20, help="worst errors shown in the report (default 20)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from texscribe.evaluation import evaluate
    from texscribe.evaluation.report import summary_rows
    from texscribe.inference import load_model

    models = args.model or ["default"]
    recognizer = load_model(models if len(models) > 1 else models[0], device=args.device,
                            backend=args.backend, num_threads=args.threads)  # fmt: skip
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
