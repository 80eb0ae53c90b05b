"""Is the ink-size estimate what small writing lacks? Scale renders read with a perfect size estimate.

`images.normalise_ink_size` brings writing to the model's symbol height using `images.measure_ink`, which
touching thick strokes can fool. This bounds what any better estimator could win: it scores a model on the
scale renders of `benchmarks/scale_invariance.py` twice, once as shipped and once with `measure_ink`
answered by an oracle: `scale` times the symbol height `measure_ink` gives for the same expression's 1x
render (the renders differ only in size, so that is the height the estimate should have found), with the
small image's own pen. Everything else (crop, the read heights of `data.read_ink_heights`, thinning,
decoding) is the library's `evaluate`, as `texscribe evaluate` runs it.

    python benchmarks/scale_invariance.py --model default --out /tmp/scale_bench     # renders, once
    python benchmarks/ink_size_oracle.py --model default --renders /tmp/scale_bench [--scales 0.5]

Prints one row per scale and setting (ExpRate, <=1, <=2 errors) and how many size measurements the oracle
answered (the rest, crops it was not given, are measured as shipped and counted).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_invariance import SCORE_HEADER, score_columns, table_title  # noqa: E402

from texscribe import images  # noqa: E402
from texscribe.data.prepared import PreparedDataset  # noqa: E402
from texscribe.evaluation.evaluate import evaluate  # noqa: E402
from texscribe.inference import load_model  # noqa: E402


def crop_key(crop: np.ndarray) -> str:
    """A digest of a cropped image's pixels and shape: how the oracle recognises the crop it is asked about."""
    arr = np.ascontiguousarray(crop)
    return hashlib.sha1(arr.tobytes() + str((arr.shape, arr.dtype.str)).encode()).hexdigest()


def oracle_sizes(small_dir: Path, reference_dir: Path, scale: float) -> dict[str, images.InkSize]:
    """crop_key(crop of each small render) -> InkSize(scale x the 1x render's symbol height, own pen).

    Crops are taken exactly as `evaluate` takes them (`PreparedDataset.load_image`, then `crop_to_ink`).
    Expressions whose 1x or small render cannot be measured are left out (measured as shipped).
    """
    small, reference = PreparedDataset.open(small_dir), PreparedDataset.open(reference_dir)
    by_id = {r.id: r for r in reference.records}
    table: dict[str, images.InkSize] = {}
    for record in small.records:
        if record.id not in by_id:
            continue
        crop = images.crop_to_ink(small.load_image(record))
        own = images.measure_ink(crop)
        ref = images.measure_ink(images.crop_to_ink(reference.load_image(by_id[record.id])))
        if own is not None and ref is not None:
            table[crop_key(crop)] = images.InkSize(ref.symbol_height * scale, own.pen)
    return table


class OracleMeasure:
    """A stand-in for `images.measure_ink` that answers from an oracle table and counts hits and misses."""

    def __init__(self, table: dict[str, images.InkSize], measure: Any) -> None:
        self.table, self.measure = table, measure
        self.hits = self.misses = 0

    def __call__(self, img: np.ndarray, threshold: float = images.INK_THRESHOLD) -> images.InkSize | None:
        size = self.table.get(crop_key(img))
        if size is None:
            self.misses += 1
            return self.measure(img, threshold)
        self.hits += 1
        return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--renders", type=Path, required=True,
                        help="--out folder of benchmarks/scale_invariance.py (holds prepared_x1, prepared_x0.5...)")  # fmt: skip
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5])
    parser.add_argument("--out", type=Path, default=None, help="evaluation folders (default: RENDERS/oracle)")
    parser.add_argument("--limit", type=int, default=None, help="first N expressions of each scale")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    out = args.out or args.renders / "oracle"

    recognizer = load_model(args.model, num_threads=args.threads)
    if recognizer.config.data.ink_height is None:
        parser.error(f"{args.model} does not normalise ink size (data.ink_height is None): nothing to bound")
    reference = args.renders / "prepared_x1"
    rows: list[tuple[float, str, dict[str, float], str]] = []
    shipped_measure = images.measure_ink
    for scale in args.scales:
        small = args.renders / f"prepared_x{scale:g}"
        for folder in (small, reference):
            if not (folder / "manifest.tsv").exists():
                parser.error(
                    f"{folder} is missing: run benchmarks/scale_invariance.py --out {args.renders} first"
                )
        table = oracle_sizes(small, reference, scale)
        for setting in ("measure_ink (as shipped)", "oracle size"):
            oracle = OracleMeasure(table, shipped_measure) if setting == "oracle size" else None
            images.measure_ink = oracle or shipped_measure  # normalise_ink_size looks it up at call time
            try:
                result = evaluate(
                    recognizer, small, out / f"x{scale:g}_{'oracle' if oracle else 'shipped'}",
                    beam=args.beam, limit=args.limit, workers=0, progress=False,
                )  # fmt: skip
            finally:
                images.measure_ink = shipped_measure
            answered = f"{oracle.hits} of {oracle.hits + oracle.misses}" if oracle else ""
            rows.append((scale, setting, result.metrics, answered))
            print(f"x{scale:g} {setting}: {100 * result.metrics['exp_rate']:.2f} %", flush=True)

    print(table_title("CROHME 2014 InkML renders", args))
    print(f"{'scale':>5} {'setting':<26} {SCORE_HEADER}  oracle answered")
    for scale, setting, m, answered in rows:
        print(f"{scale:>5g} {setting:<26} {score_columns(m)}  {answered}")


if __name__ == "__main__":
    main()
