"""Does a model read the same formulas written small or large? CROHME 2014 rendered at several sizes.

People write at any size; CROHME's bitmaps all have strokes of ~28 px. This renders the 986 CROHME 2014
InkML expressions with the same pen (`line_width` 2: 3.4 px) at `--scales` times the bitmap size (symbol height 28 x s), labels
them with the official 2014 captions, prepares each scale as a dataset, and scores the model on each with
the library's `evaluate` (what `texscribe evaluate` runs): as the model file says, and with ink-size
normalisation (`data.ink_height`, see `texscribe.images.normalise_ink_size`) switched on at `--ink-height`.

    python benchmarks/scale_invariance.py --model default --out /tmp/scale_bench [--scales 0.5 1 2 3]

Prints one row per scale and setting (ExpRate, <=1, <=2 errors, and the gap to 1x) and the CLI commands
that give the same figures: `texscribe data prepare OUT/x2/manifest.tsv --out OUT/prepared_x2` then
`texscribe evaluate --model M --data OUT/prepared_x2`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texscribe.data.prepare import prepare  # noqa: E402
from texscribe.data.readers.inkml import read_inkml  # noqa: E402
from texscribe.data.render_strokes import RenderOptions  # noqa: E402
from texscribe.data.sample import Skipped  # noqa: E402
from texscribe.evaluation.evaluate import evaluate  # noqa: E402
from texscribe.inference import load_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "crohme"
BITMAP_STROKE_HEIGHT = (
    28.0  # px: the mean stroke height of the CROHME offline bitmaps (data/render_strokes.py)
)


def official_captions(offline_zip: Path, split: str) -> dict[str, str]:
    """id -> space-tokenised caption of the CoMER-layout zip's split (the labels the 2014 figures use)."""
    with zipfile.ZipFile(offline_zip) as z:
        lines = z.read(f"data/{split}/caption.txt").decode("utf-8").splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def write_folder(out: Path, items: Iterable[tuple[str, str, Callable[[], np.ndarray]]]) -> int:
    """Write a render folder from (id, tokens, make image) items: `out/img/<id>.png` (uint8, ink bright; made
    only when missing, so a re-run resumes) and `out/manifest.tsv` (`id, image, tokens`); returns the count."""
    (out / "img").mkdir(parents=True, exist_ok=True)
    rows = ["id\timage\ttokens"]
    for sample_id, tokens, make in items:
        path = out / "img" / f"{sample_id}.png"
        if not path.exists():
            cv2.imwrite(str(path), make())
        rows.append(f"{sample_id}\timg/{sample_id}.png\t{tokens}")
    (out / "manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows) - 1


def render_split(
    inkml_zip: Path, split: str, captions: dict[str, str], scale: float, out: Path, line_width: float = 2.0
) -> int:
    """Draw a split's InkML into the render folder `out` (`write_folder`), labelled by `captions`; returns count.

    line_width: `RenderOptions.line_width` (2, the default, draws a 3.4 px anti-aliased pen at every scale).
    Files the reader cannot use and files without a caption are left out and reported on stderr.
    """
    options = RenderOptions(stroke_height=BITMAP_STROKE_HEIGHT * scale, line_width=line_width)
    left_out: list[str] = []

    def items() -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
        for item in read_inkml(inkml_zip, split, render=options):
            if isinstance(item, Skipped):
                left_out.append(item.detail)
            elif item.load is None or item.id not in captions:
                left_out.append(f"{item.id}: no image or no official caption")
            else:
                yield item.id, captions[item.id], item.load

    count = write_folder(out, items())
    if left_out:
        print(f"{out}: left out {len(left_out)}: " + "; ".join(left_out), file=sys.stderr)
    return count


def prepared_copy(folder: Path, prepared: Path) -> Path:
    """`prepared` made from the render folder `folder`'s manifest (once: an existing one is reused)."""
    if not (prepared / "manifest.tsv").exists():
        prepare([str(folder / "manifest.tsv")], prepared, workers=1, progress=False)
    return prepared


def table_title(what: str, args: argparse.Namespace) -> str:
    """The line above a results table: what was read, by which model and beam, and `--limit` if given."""
    return f"\n{what}, model {args.model}, beam {args.beam}" + (f", first {args.limit}" if args.limit else "")


SCORE_HEADER = f"{'n':>5} {'ExpRate':>8} {'<=1':>7} {'<=2':>7}"


def score_columns(metrics: dict[str, float]) -> str:
    """n, ExpRate, <=1 and <=2 errors of `evaluate`'s metrics, under `SCORE_HEADER`."""
    m = metrics
    return f"{m['n']:>5} {100 * m['exp_rate']:>7.2f}% {100 * m['le1']:>6.2f}% {100 * m['le2']:>6.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, required=True, help="folder for renders, prepared sets, reports")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--ink-height", type=float, default=BITMAP_STROKE_HEIGHT)
    parser.add_argument("--ink-tolerance", type=float, default=None,
                        help="data.ink_height_tolerance of the --ink-height setting (default: the model's)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="first N expressions of each scale")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    captions = official_captions(SHARED / "crohme_offline.zip", "2014")
    recognizer = load_model(args.model, num_threads=args.threads)
    as_shipped = recognizer.config.data.ink_height
    tolerance = args.ink_tolerance or recognizer.config.data.ink_height_tolerance
    settings = {  # name -> (ink_height, ink_height_tolerance, eval folder tag)
        f"model file (ink_height={as_shipped})": (
            as_shipped,
            recognizer.config.data.ink_height_tolerance,
            "model",
        ),
        f"ink_height={args.ink_height:g} tol {tolerance:g}": (
            args.ink_height,
            tolerance,
            f"ink_t{tolerance:g}",
        ),
    }
    rows: list[tuple[str, float, dict[str, float]]] = []
    for scale in args.scales:
        folder = args.out / f"x{scale:g}"
        count = render_split(SHARED / "crohme_inkml.zip", "2014", captions, scale, folder)
        prepared = prepared_copy(folder, args.out / f"prepared_x{scale:g}")
        print(f"x{scale:g}: {count} expressions rendered, prepared at {prepared}", flush=True)
        for name, (ink_height, tol, tag) in settings.items():
            config = copy.deepcopy(recognizer.config)
            config.data.ink_height, config.data.ink_height_tolerance = ink_height, tol
            original, recognizer.config = recognizer.config, config
            try:
                result = evaluate(
                    recognizer, prepared, args.out / f"eval_x{scale:g}_{tag}",
                    beam=args.beam, limit=args.limit, workers=1, progress=False,
                )  # fmt: skip
            finally:
                recognizer.config = original
            rows.append((name, scale, result.metrics))

    base = {name: m["exp_rate"] for name, scale, m in rows if scale == 1.0}
    print(table_title("CROHME 2014 InkML renders", args))
    print(f"{'setting':<28} {'scale':>5} {SCORE_HEADER} {'vs 1x':>7}")
    for name, scale, m in rows:
        gap = f"{100 * (m['exp_rate'] - base[name]):+.1f}" if name in base else ""
        print(f"{name:<28} {scale:>5g} {score_columns(m)} {gap:>7}")


if __name__ == "__main__":
    main()
