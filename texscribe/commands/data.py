"""`texscribe data prepare|render|synth-handwriting|decompose-inkml|info`: build a prepared dataset from raw sources, by
rendering formulas with TeX or by composing handwriting from CROHME glyphs, or summarise one."""

from __future__ import annotations

import argparse

FORMAT_CHOICES = ["auto", "comer", "im2markup", "labels", "manifest", "inkml"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from texscribe.data.cleaning import MULTILINE_POLICIES

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
    prep.add_argument(
        "--ink-height",
        type=float,
        default=None,
        metavar="PX",
        help="normalise each image's writing size to this symbol height (px; as the model's data.ink_height)",
    )
    prep.add_argument(
        "--multiline",
        default="drop",
        choices=MULTILINE_POLICIES,
        help="matrices, arrays, cases and \\\\ rows: drop (default), keep, or keep only them",
    )
    prep.add_argument(
        "--stroke-height",
        type=float,
        default=None,
        metavar="PX",
        help="InkML sources: draw strokes this tall with the usual pen (default 28: the CROHME bitmap look)",
    )
    prep.add_argument("--workers", type=int, default=2, help="image worker processes (default 2)")
    prep.add_argument("--limit", type=int, default=None, help="read at most N items per source")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)

    _register_render(sub)
    _register_synth_handwriting(sub)
    _register_decompose_inkml(sub)

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
        ink_height=args.ink_height,
        workers=args.workers,
        limit=args.limit,
        multiline=args.multiline,
        stroke_height=args.stroke_height,
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


def _register_render(sub: argparse._SubParsersAction) -> None:
    from texscribe.render.corpus import DEFAULT_HELD_OUT_FRACTION
    from texscribe.render.style import DEFAULT_DPIS, DEFAULT_FONTS, DEFAULT_SIZES, FONTS

    ren = sub.add_parser(
        "render",
        help="render LaTeX formulas (k12, CROHME captions, synthetic, a file) into a printed prepared dataset",
        description="Render a formula corpus with real TeX (latex + dvipng; matplotlib mathtext where TeX is "
        "missing) in mixed fonts/sizes/dpi, optionally photo-degraded, into a prepared dataset. Formulas that "
        "fail to compile are listed by cause in report.md and skipped.tsv. Re-running resumes (content-hash "
        "cache). A hash-chosen held-out part goes to OUT/held_out.",
    )
    ren.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="CORPUS",
        help="k12, crohme (train captions), synthetic, k12=PATH, crohme=PATH, or a text FILE (one formula a line)",
    )
    ren.add_argument("--out", required=True, help="output folder (created; re-running resumes)")
    ren.add_argument(
        "--limit", type=int, default=None, help="distinct formulas per corpus (synthetic: how many; 10000)"
    )
    ren.add_argument("--fonts", nargs="+", default=list(DEFAULT_FONTS), choices=FONTS, help="font families")
    ren.add_argument("--sizes", nargs="+", type=float, default=list(DEFAULT_SIZES), help="font sizes, pt")
    ren.add_argument("--dpi", nargs="+", type=int, default=list(DEFAULT_DPIS), help="resolutions, dpi")
    ren.add_argument(
        "--degrade", type=float, default=0.0, metavar="P", help="probability of a photo-like degradation (0)"
    )
    ren.add_argument(
        "--display", type=float, default=0.5, metavar="P", help="probability of display (vs text) style"
    )
    ren.add_argument("--variants", type=int, default=1, help="renderings per formula, each in its own style")
    ren.add_argument("--workers", type=int, default=2, help="render processes (default 2)")
    ren.add_argument("--batch-size", type=int, default=None, help="formulas per TeX run (256)")
    ren.add_argument(
        "--held-out-fraction",
        type=float,
        default=DEFAULT_HELD_OUT_FRACTION,
        metavar="F",
        help=f"hash-chosen held-out share ({DEFAULT_HELD_OUT_FRACTION})",
    )
    ren.add_argument(
        "--renderer", default="auto", choices=["auto", "tex", "mathtext"], help="(auto: TeX if installed)"
    )
    ren.add_argument("--seed", type=int, default=0, help="style and synthetic-corpus seed")
    ren.add_argument("--max-label-len", type=int, default=200, help="drop formulas longer than N tokens")
    ren.add_argument(
        "--drop-multiline", action="store_true", help="drop matrices/arrays/\\\\ like prepare does"
    )
    ren.add_argument("--tokenized", action="store_true", help="FILE corpora are space-separated tokens")
    ren.add_argument(
        "--data-root", default=None, help="folder holding formulas/ and crohme/ (../shared/data)"
    )
    ren.add_argument("--no-progress", action="store_true", help="no progress bar")
    ren.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from texscribe.errors import InputError
    from texscribe.render.render_dataset import DEFAULT_BATCH, render_dataset
    from texscribe.render.style import StyleSpace

    for name in ("degrade", "display"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise InputError(f"--{name} must be a probability in [0, 1], got {getattr(args, name)}")
    styles = StyleSpace(
        fonts=tuple(args.fonts),
        sizes=tuple(args.sizes),
        dpis=tuple(args.dpi),
        degrade=args.degrade,
        display=args.display,
        seed=args.seed,
    )
    result = render_dataset(
        args.corpus,
        args.out,
        limit=args.limit,
        styles=styles,
        variants=args.variants,
        held_out_fraction=args.held_out_fraction,
        renderer=args.renderer,
        workers=args.workers,
        batch_size=args.batch_size or DEFAULT_BATCH,
        max_label_len=args.max_label_len,
        drop_multiline=args.drop_multiline,
        tokenized=args.tokenized,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    rows: list[tuple[str, object]] = [("renderer", result.renderer), ("train images", result.train)]
    rows += [("held-out images", result.held_out)]
    rows += [(f"corpus dropped: {reason}", n) for reason, n in result.corpus_dropped.most_common()]
    rows += [(f"render failed: {cause}", n) for cause, n in result.failures.most_common()]
    rows += [
        ("renderings new / cached", f"{result.attempted} / {result.reused}"),
        ("throughput", f"{result.formulas_per_s:.1f} formulas/s ({result.formulas_per_cpu_s:.1f} per CPU s)"),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
    _print_table(rows)
    print(f"wrote {result.out} (manifest.tsv, images/, vocab.json, report.md, skipped.tsv; held_out/)")
    return 0


def _register_synth_handwriting(sub: argparse._SubParsersAction) -> None:
    syn = sub.add_parser(
        "synth-handwriting",
        help="compose handwritten formulas from CROHME InkML glyphs into a prepared dataset",
        description="Lay out formulas (CROHME train captions + k12 formulas in CROHME's vocabulary, never a "
        "2014 test formula) with matplotlib mathtext and draw each symbol with a real writer's glyph from the "
        "CROHME InkML train split, in the CROHME bitmap look. Re-running resumes. See docs/RENDERING.md.",
    )
    syn.add_argument("--out", required=True, help="output folder (created; re-running resumes)")
    syn.add_argument("--count", type=int, required=True, help="number of images to generate")
    syn.add_argument("--seed", type=int, default=0, help="seed of the formula order and every image (0)")
    syn.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    syn.add_argument(
        "--formulas", nargs="*", default=None, metavar="FILE",
        help="raw LaTeX formula files besides the CROHME captions (default: k12_formulas.lst)",
    )  # fmt: skip
    syn.add_argument(
        "--max-label-len", type=int, default=100, help="drop formulas longer than N tokens (100)"
    )
    syn.add_argument("--inkml", default=None, help="CROHME InkML zip (<data root>/crohme/crohme_inkml.zip)")
    syn.add_argument("--bank", default=None, help="glyph bank cache .npz (default: ~/.cache/texscribe/)")
    syn.add_argument(
        "--data-root", default=None, help="folder holding crohme/ and formulas/ (../shared/data)"
    )
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.set_defaults(func=_synth_handwriting)


def _synth_handwriting(args: argparse.Namespace) -> int:
    from texscribe.render.handwriting_dataset import synth_handwriting

    result = synth_handwriting(
        args.out,
        args.count,
        seed=args.seed,
        workers=args.workers,
        data_root=args.data_root,
        inkml=args.inkml,
        bank=args.bank,
        extra_formulas=args.formulas,
        max_len=args.max_label_len,
        progress=not args.no_progress,
    )
    rows: list[tuple[str, object]] = [("usable formulas", result.formulas), ("images kept", result.kept)]
    rows += [(f"failed: {cause}", n) for cause, n in result.failures.most_common()]
    rows += [
        ("images new / reused", f"{result.generated} / {result.reused}"),
        ("speed", f"{result.images_per_s:.1f} images/s ({result.images_per_cpu_s:.1f} per CPU s)"),
        ("glyph bank", result.bank_path),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
    _print_table(rows)
    print(f"wrote {result.out} (manifest.tsv, images/, vocab.json, report.md, skipped.tsv)")
    return 0


def _register_decompose_inkml(sub: argparse._SubParsersAction) -> None:
    dec = sub.add_parser(
        "decompose-inkml",
        help="cut the CROHME InkML train expressions into sub-expression images (a prepared dataset)",
        description="Read each CROHME InkML train file (never a test split) whose MathML tree gives its truth "
        "label, and draw up to --max-per-file of its sub-expressions (numerators, denominators, radicands, "
        "script nodes and bases, under/over bodies, runs of a row; 2+ symbols, never a 2014 test caption) "
        "from their own traces at the whole file's scale. Re-running resumes. See docs/SYNTHETIC_HANDWRITING.md.",
    )
    dec.add_argument("--out", required=True, help="output folder (created; re-running resumes)")
    dec.add_argument("--inkml", default=None, help="CROHME InkML zip (<data root>/crohme/crohme_inkml.zip)")
    dec.add_argument("--max-per-file", type=int, default=6, help="parts kept per file, a seeded choice (6)")
    dec.add_argument("--seed", type=int, default=0, help="seed of the choice of parts (0)")
    dec.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    dec.add_argument("--limit", type=int, default=None, help="decompose only the first N train files")
    dec.add_argument(
        "--data-root", default=None, help="folder holding crohme/ (the 2014 captions; ../shared/data)"
    )
    dec.add_argument("--no-progress", action="store_true", help="no progress bar")
    dec.set_defaults(func=_decompose_inkml)


def _decompose_inkml(args: argparse.Namespace) -> int:
    from texscribe.render.decompose_dataset import decompose_inkml

    result = decompose_inkml(
        args.out,
        inkml=args.inkml,
        data_root=args.data_root,
        max_per_file=args.max_per_file,
        seed=args.seed,
        workers=args.workers,
        limit=args.limit,
        progress=not args.no_progress,
    )
    rows: list[tuple[str, object]] = [
        ("files read", result.files),
        ("files passing the MathML check", result.files_passing),
    ]
    rows += [(f"files skipped: {reason}", n) for reason, n in result.files_skipped.most_common()]
    rows += [(f"images kept: {kind}", n) for kind, n in result.kept.most_common()]
    rows += [(f"parts dropped: {reason}", n) for reason, n in result.dropped.most_common()]
    rows += [
        ("images new / reused", f"{result.generated} / {result.reused}"),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
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
