"""`texscribe predict INPUT...`: recognise image files, folders, globs or @lists; results in input order."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from texscribe.commands.common import add_decode_args, add_model_args, load_recognizer, model_spec
from texscribe.errors import ConfigError
from texscribe.inputs import expand_inputs, read_manifest

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
        nargs="*",
        metavar="INPUT",
        help="image file, folder (its images, sorted, recursively), glob ('img/*.png'), or @list.txt "
        "(one path per line, relative to the list file)",
    )
    parser.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="TSV/CSV manifest: an image column (image, path, file, ...; paths relative to "
                        "the file) and optionally id, which then keys the results; repeatable")  # fmt: skip
    add_model_args(parser)
    add_decode_args(parser)
    parser.add_argument("--format", default="text", choices=["text", "tsv", "jsonl"], help="output format")
    parser.add_argument("--output", "-o", help="write results to this file instead of stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("engine", "where recognition runs (Ray: pip install 'texscribe[ray]')")
    ray.add_argument("--engine", default="local", choices=["local", "ray"],
                     help="local: this process (default); ray: a pool of Ray workers, each loading the "
                     "model once, results still in input order")  # fmt: skip
    ray.add_argument("--address", help="Ray cluster to join: 'auto' or HOST:PORT (default: start a private "
                     "Ray on loopback for this job)")  # fmt: skip
    ray.add_argument("--ray-workers", type=int, default=2,
                     help="Ray workers (default 2); each uses --threads torch threads (default 1 with Ray)")  # fmt: skip
    ray.add_argument("--retries", type=int, default=3,
                     help="times a dead Ray worker's images are sent again (default 3)")  # fmt: skip
    parser.set_defaults(func=_run)


def check_args(args: argparse.Namespace) -> None:
    """`ConfigError` naming the first flag whose value is out of range, or an --output that cannot be written."""
    from texscribe.inference import DECODE_LIMITS, check_range, check_threads

    limits = {**DECODE_LIMITS, "workers": (0, None, "loading threads"), "ray_workers": (1, None, "Ray workers"),
              "retries": (0, None, "resends of a dead worker's images")}  # fmt: skip
    for name, (low, high, meaning) in limits.items():
        check_range(f"--{name.replace('_', '-')}", getattr(args, name), low, high, meaning)
    if args.address and args.engine != "ray":
        raise ConfigError("--address: only with --engine ray")
    if not args.inputs and not args.manifest:
        raise ConfigError(
            "no INPUT and no --manifest: give image files, folders, globs, @lists or a manifest"
        )
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

    from texscribe.inference import iter_predictions

    check_args(args)
    paths, problems = expand_inputs(args.inputs)
    items = [(p, p) for p in paths]
    for manifest in args.manifest:
        rows, bad_rows = read_manifest(manifest)
        items += rows
        problems += bad_rows
    for spec, reason in problems:
        print(f"skipped {spec}: {reason}", file=sys.stderr)
    if not items:
        print("texscribe predict: no images to recognise", file=sys.stderr)
        return 1
    model = model_spec(args)
    decode = {"beam": args.beam, "batch_size": args.batch_size, "max_len": args.max_len}
    chunk_size = max(16, args.batch_size * 4)
    try:
        out = open(args.output, "w", encoding="utf-8", newline="\n") if args.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"--output {args.output}: cannot write it ({exc.strerror})") from exc
    if args.engine == "ray":
        from texscribe.ray_engine import RayRecognizerPool

        pool = RayRecognizerPool(model, workers=args.ray_workers, threads=args.threads or 1,
                                 load_workers=max(1, args.workers), backend=args.backend, device=args.device,
                                 address=args.address, max_retries=args.retries,
                                 data_overrides=args.set)  # fmt: skip
        outcomes = pool.predict(items, chunk_size=chunk_size, **decode)
    else:
        pool = None
        outcomes = iter_predictions(
            load_recognizer(args), items, workers=args.workers, chunk_size=chunk_size, **decode
        )
    skipped = len(problems)
    try:
        if args.format == "tsv":
            out.write("source\tlatex\tscore\tmin_prob\tseconds\n")
        bar = tqdm(total=len(items), unit="img", file=sys.stderr,
                   disable=args.no_progress or len(items) == 1)  # fmt: skip
        for outcome in outcomes:
            bar.update(1)
            if outcome.prediction is None:
                skipped += 1
                bar.write(f"skipped {outcome.source}: {outcome.error}", file=sys.stderr)
                continue
            out.write(_format(outcome.prediction, args.format, single=len(items) == 1))
            out.flush()
        bar.close()
    finally:
        if out is not sys.stdout:
            out.close()
        if pool is not None:
            pool.close()
    if skipped:
        print(
            f"{skipped} input(s) skipped, {len(items) - (skipped - len(problems))} recognised",
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
