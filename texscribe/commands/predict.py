"""`texscribe predict INPUT...`: recognise image files, folders, globs or @lists; results in input order."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from texscribe.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}

CONFIDENCE_HELP = """\
confidence: `score` is the mean probability the model gave each token it emitted (the final end
token included), `min_prob` the lowest of them. Low values flag outputs worth checking; they are
NOT the probability that the LaTeX is correct (a model can be confidently wrong, and a correct
formula can score low on an unusual symbol). See docs/CONFIDENCE.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="recognise images of formulas (files, folders, globs, @list.txt)",
        description="Recognise images of math and print LaTeX, one result per image, in input order.",
        epilog=CONFIDENCE_HELP
        + "\nExit status: 0 when every input was recognised, 1 when some were skipped (reported on stderr).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image file, folder (its images, sorted, recursively), glob ('img/*.png'), or @list.txt "
        "(one path per line, relative to the list file)",
    )
    parser.add_argument("--model", action="append", help="shipped name, model file or ONNX export dir "
                        "(default: default); repeat for an ensemble")  # fmt: skip
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="inference backend")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy, default)")
    parser.add_argument("--max-len", type=int, default=200, help="longest output in tokens (default 200)")
    parser.add_argument("--format", default="text", choices=["text", "tsv", "jsonl"], help="output format")
    parser.add_argument("--output", "-o", help="write results to this file instead of stdout")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model batch (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="image loading threads (default 2)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def expand_inputs(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """INPUT arguments -> (image paths in order, [(spec, reason)] for arguments that match nothing).

    Folders contribute their image files (by suffix) sorted by path; globs their matches sorted; an
    `@list.txt` its lines (blank lines and `#` comments ignored). An explicitly named file is kept whatever
    its suffix or kind (a device or FIFO too), so a mislabelled, corrupt or special file is reported by the
    loader, which says what is wrong with it, rather than dropped or called missing.
    """
    paths: list[str] = []
    problems: list[tuple[str, str]] = []
    for spec in specs:
        if spec.startswith("@"):
            listing = Path(spec[1:])
            try:
                if _path_kind(listing) == "other" and not listing.is_file():  # /dev/zero never ends
                    raise OSError(f"{listing} is not a regular file")
                lines = listing.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((spec, f"cannot read list file: {exc}"))
                continue
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
            sub, sub_problems = expand_inputs([str(listing.parent / e) for e in entries])
            paths += sub
            problems += sub_problems
            continue
        kind = _path_kind(Path(spec))
        if kind == "folder":
            found = sorted(
                str(p) for p in Path(spec).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                problems.append((spec, "folder holds no image files"))
            paths += found
        elif kind == "other":  # a file, a device or FIFO ("not a regular file"), a name too long...
            paths.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                problems.append((spec, "pattern matches no files"))
            paths += found
        else:
            problems.append((spec, "no such file or folder"))
    return paths, problems


def _path_kind(path: Path) -> str:
    """'folder', 'missing', or 'other': anything else that exists, or that cannot even be looked up
    (a name too long for the file system), for the loader to report in its own words."""
    try:
        if path.is_dir():
            return "folder"
        return "other" if path.exists() else "missing"
    except OSError:
        return "other"


def check_args(args: argparse.Namespace) -> None:
    """`ConfigError` naming the first flag whose value is out of range, or an --output that cannot be written."""
    from texscribe.inference import DECODE_MINIMUMS, check_minimum, check_threads

    for name, (low, meaning) in {**DECODE_MINIMUMS, "workers": (0, "loading threads")}.items():
        check_minimum(f"--{name.replace('_', '-')}", getattr(args, name), low, meaning)
    if args.threads is not None:
        check_threads("--threads", args.threads)
    if args.output:
        out = Path(args.output)
        if out.is_dir():
            raise ConfigError(f"--output {args.output}: is a folder; give a file path")
        if not out.parent.is_dir():
            raise ConfigError(f"--output {args.output}: folder {out.parent} does not exist; create it first")


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from texscribe.inference import iter_predictions, load_model

    check_args(args)
    paths, problems = expand_inputs(args.inputs)
    for spec, reason in problems:
        print(f"skipped {spec}: {reason}", file=sys.stderr)
    if not paths:
        print("texscribe predict: no images to recognise", file=sys.stderr)
        return 1
    models = args.model or ["default"]
    recognizer = load_model(models if len(models) > 1 else models[0], device=args.device,
                            backend=args.backend, num_threads=args.threads)  # fmt: skip
    try:
        out = open(args.output, "w", encoding="utf-8", newline="\n") if args.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"--output {args.output}: cannot write it ({exc.strerror})") from exc
    skipped = len(problems)
    try:
        if args.format == "tsv":
            out.write("source\tlatex\tscore\tmin_prob\tseconds\n")
        bar = tqdm(total=len(paths), unit="img", file=sys.stderr,
                   disable=args.no_progress or len(paths) == 1)  # fmt: skip
        outcomes = iter_predictions(
            recognizer,
            [(p, p) for p in paths],
            workers=args.workers,
            chunk_size=max(16, args.batch_size * 4),
            beam=args.beam,
            batch_size=args.batch_size,
            max_len=args.max_len,
        )
        for outcome in outcomes:
            bar.update(1)
            if outcome.prediction is None:
                skipped += 1
                bar.write(f"skipped {outcome.source}: {outcome.error}", file=sys.stderr)
                continue
            out.write(_format(outcome.prediction, args.format, single=len(paths) == 1))
            out.flush()
        bar.close()
    finally:
        if out is not sys.stdout:
            out.close()
    if skipped:
        print(
            f"{skipped} input(s) skipped, {len(paths) - (skipped - len(problems))} recognised",
            file=sys.stderr,
        )
    return 1 if skipped else 0


def _format(pred, fmt: str, single: bool) -> str:
    if fmt == "jsonl":
        record = {
            "source": pred.source,
            "latex": pred.latex,
            "tokens": pred.tokens,
            "score": round(pred.score, 6),
            "min_prob": round(pred.min_prob, 6),
            "seconds": round(pred.seconds, 6),
        }
        return json.dumps(record, ensure_ascii=False) + "\n"
    if fmt == "tsv":
        return f"{_cell(pred.source)}\t{_cell(pred.latex)}\t{pred.score:.4f}\t{pred.min_prob:.4f}\t{pred.seconds:.4f}\n"
    return f"{pred.latex}\n" if single else f"{pred.source}\t{pred.latex}\n"


def _cell(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
