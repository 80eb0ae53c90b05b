"""`texscribe data prepare|info`: build a prepared dataset from raw sources, or summarise one."""

from __future__ import annotations

import argparse

FORMAT_CHOICES = ["auto", "comer", "im2markup", "labels", "manifest", "inkml"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare datasets (readers, cleaning, report) and inspect them"
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    prep = sub.add_parser(
        "prepare",
        help="read sources, clean, crop and write a prepared dataset",
        description="SOURCE is PATH[:SPLIT], e.g. crohme_offline.zip:train, im2latex_val.zip:validate, "
        "a label folder, a manifest .tsv/.csv, or an InkML zip/folder.",
    )
    prep.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="PATH[:SPLIT] (zip, folder or manifest file)"
    )
    prep.add_argument("--out", required=True, help="output folder (created; re-running resumes)")
    prep.add_argument(
        "--format", default="auto", choices=FORMAT_CHOICES, help="source format (default: detect)"
    )
    prep.add_argument("--vocab-from", help="reuse the vocabulary of this prepared dataset (for test splits)")
    prep.add_argument(
        "--max-label-len", type=int, default=None, help="drop labels longer than N tokens (512)"
    )
    prep.add_argument("--max-height", type=int, default=None, help="downscale taller images to N px")
    prep.add_argument("--workers", type=int, default=2, help="image worker processes (default 2)")
    prep.add_argument("--limit", type=int, default=None, help="read at most N items per source")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)

    info = sub.add_parser("info", help="summarise a prepared dataset")
    info.add_argument("path", metavar="DIR")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _prepare(args: argparse.Namespace) -> int:
    from texscribe.data.prepare import DEFAULT_MAX_LABEL_LEN, prepare

    result = prepare(
        args.sources,
        args.out,
        format=args.format,
        vocab_from=args.vocab_from,
        max_label_len=args.max_label_len if args.max_label_len is not None else DEFAULT_MAX_LABEL_LEN,
        max_height=args.max_height,
        workers=args.workers,
        limit=args.limit,
        progress=not args.no_progress,
    )
    rows = [("in", result.n_in), ("kept", result.kept)]
    rows += [(f"dropped: {reason}", n) for reason, n in result.dropped.most_common()]
    rows += [
        ("vocabulary", result.vocab_size),
        ("images written / reused", f"{result.written} / {result.reused}"),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
    if result.unknown_tokens:
        rows.append(("tokens outside vocab", sum(result.unknown_tokens.values())))
    _print_table(rows)
    print(f"wrote {result.out} (manifest.tsv, images/, vocab.json, report.md, skipped.tsv)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from collections import Counter

    import numpy as np

    from texscribe.data.prepared import PreparedDataset

    ds = PreparedDataset.open(args.path)
    lengths = np.array([len(r.tokens) for r in ds.records] or [0])
    heights = np.array([r.height for r in ds.records] or [0])
    widths = np.array([r.width for r in ds.records] or [0])
    sources = Counter(r.source for r in ds.records)
    rows: list[tuple[str, object]] = [("root", ds.root), ("records", len(ds))]
    rows += [(f"  from {s}", n) for s, n in sources.most_common()]
    rows += [
        ("vocabulary", len(ds.vocab)),
        ("label tokens (median / max)", f"{np.median(lengths):.0f} / {lengths.max()}"),
        ("height px (median / max)", f"{np.median(heights):.0f} / {heights.max()}"),
        ("width px (median / max)", f"{np.median(widths):.0f} / {widths.max()}"),
    ]
    report = ds.report
    for reason, n in report.get("counts", {}).get("by_reason", {}).items():
        rows.append((f"dropped at prepare: {reason}", n))
    _print_table(rows)
    return 0


def _print_table(rows: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
