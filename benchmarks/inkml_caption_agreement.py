"""How well does normalised InkML truth agree with the CoMER captions of the same CROHME ids?

    python benchmarks/inkml_caption_agreement.py [--split 2014] [--show 3] [--render 60]

Reads `crohme_inkml.zip` with `read_inkml` and `crohme_offline.zip` with `read_comer`, normalises
both sides with `texscribe.latex` (the same options on both sides), prints the % of ids whose token
sequences are identical and sorts the rest into causes. `--render N` also compares the rendered
strokes with the offline bitmaps of N ids (size ratio, ink area ratio).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from texscribe.data.readers.comer import read_comer
from texscribe.data.readers.inkml import read_inkml
from texscribe.data.sample import Sample
from texscribe.errors import LabelError
from texscribe.latex import FUNCTION_NAMES, NormalizeOptions, parse_label, split_label

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "crohme"


def classify(truth: list[str], caption: list[str]) -> tuple[str, str]:
    """(cause, short diff) of two different token sequences."""
    ops = [
        op
        for op in difflib.SequenceMatcher(a=truth, b=caption, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    pieces = [(" ".join(truth[i1:i2]), " ".join(caption[j1:j2])) for _, i1, i2, j1, j2 in ops]
    diff = "; ".join(f"{a or '∅'} -> {b or '∅'}" for a, b in pieces)
    changed = {t for a, b in pieces for t in (a + " " + b).split()}
    if changed and all(t.isdigit() or t in {".", ","} for t in changed):
        return "number written differently (trailing .0, leading 0, separators)", diff
    if any(a.replace(" ", "") in FUNCTION_NAMES and b == "\\" + a.replace(" ", "") for a, b in pieces):
        return "function name spelled as letters in the truth (l o g vs \\log)", diff
    if any("A B O V E" in a or "B E L O W" in a for a, _ in pieces):
        return "RIT layout words (ABOVE/BELOW) the truth could not express", diff
    if all(a and b and len(a.split()) == len(b.split()) == 1 for a, b in pieces):
        return "symbol differs (one token for another)", diff
    if all(not b for _, b in pieces):
        return "tokens only in the truth (caption dropped them)", diff
    if all(not a for a, _ in pieces):
        return "tokens only in the caption", diff
    return "structure differs (scripts / grouping)", diff


def agreement(split: str, inkml: Path, offline: Path, options: NormalizeOptions, limit: int | None = None):
    """Returns (n_compared, n_equal, causes: cause -> [(id, diff)], notes: Counter of unusable ids)."""
    captions = {s.id: s.latex for s in read_comer(offline, split) if isinstance(s, Sample)}
    causes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    notes: Counter = Counter()
    compared = equal = 0
    for item in read_inkml(inkml, split):
        if limit is not None and compared >= limit:
            break
        if not isinstance(item, Sample):
            notes[f"InkML skipped by the reader ({item.reason})"] += 1
            continue
        if item.id not in captions:
            notes["InkML id without a caption"] += 1
            continue
        compared += 1
        caption = split_label(captions[item.id], options)
        try:
            truth = parse_label(item.latex, options)
        except LabelError as exc:
            causes["truth is not valid LaTeX (unbalanced braces)"].append((item.id, exc.reason))
            continue
        if truth == caption:
            equal += 1
        else:
            cause, diff = classify(truth, caption)
            causes[cause].append((item.id, diff))
    return compared, equal, causes, notes


def render_match(split: str, inkml: Path, offline: Path, n: int) -> None:
    """Print size and ink-area ratios of rendered strokes vs the offline bitmaps of the same ids."""
    from texscribe.images import load_image

    bitmaps = {s.id: s for s in read_comer(offline, split) if isinstance(s, Sample)}
    rows = []
    for item in read_inkml(inkml, split):
        if len(rows) >= n:
            break
        if isinstance(item, Sample) and item.id in bitmaps:
            ours = item.load().astype(np.float32) / 255
            theirs = load_image(bitmaps[item.id].load())
            rows.append((*theirs.shape, *ours.shape, (theirs > 0.5).sum(), (ours > 0.5).sum()))
    r = np.array(rows, dtype=np.float64)
    pct = [10, 50, 90]
    print(f"\nrendering vs offline bitmaps, {len(r)} ids of {split} (percentiles {pct}):")
    print(
        f"  offline height {np.percentile(r[:, 0], pct).round(1)}   rendered height {np.percentile(r[:, 2], pct).round(1)}"
    )
    print(
        f"  offline width  {np.percentile(r[:, 1], pct).round(1)}   rendered width  {np.percentile(r[:, 3], pct).round(1)}"
    )
    print(f"  same-id height ratio {np.percentile(r[:, 2] / r[:, 0], pct).round(3)}")
    print(f"  same-id width ratio  {np.percentile(r[:, 3] / r[:, 1], pct).round(3)}")
    print(f"  ink pixels ratio (stroke width) {np.percentile(r[:, 5] / r[:, 4], pct).round(3)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="2014")
    parser.add_argument("--inkml", type=Path, default=DATA / "crohme_inkml.zip")
    parser.add_argument("--offline", type=Path, default=DATA / "crohme_offline.zip")
    parser.add_argument("--limit", type=int, default=None, help="compare only the first N ids")
    parser.add_argument("--show", type=int, default=3, help="example ids printed per cause")
    parser.add_argument("--spelled-functions", action="store_true", help="also fold `l o g` -> `\\log`")
    parser.add_argument("--render", type=int, default=0, metavar="N", help="also compare N renderings")
    args = parser.parse_args(argv)
    for path in (args.inkml, args.offline):
        if not path.exists():
            print(f"not found: {path} (pass --inkml / --offline)", file=sys.stderr)
            return 2
    options = NormalizeOptions(spelled_functions=args.spelled_functions)
    compared, equal, causes, notes = agreement(args.split, args.inkml, args.offline, options, args.limit)
    print(
        f"split {args.split}: {equal}/{compared} ids agree exactly = {100 * equal / max(compared, 1):.2f} %"
    )
    for note, count in notes.items():
        print(f"  (not compared: {count} {note})")
    print(f"\n{'count':>5}  {'% of ids':>8}  cause")
    for cause, items in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(items):>5}  {100 * len(items) / max(compared, 1):>7.2f}%  {cause}")
        for sample_id, diff in items[: args.show]:
            print(f"{'':17}{sample_id}: {diff[:110]}")
    if args.render:
        render_match(args.split, args.inkml, args.offline, args.render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
