"""The model card's "printed held-out, unseen formulas" set: held-out print whose formula no training set holds.

    python scripts/held_out_unseen.py HELD_OUT --train DIR... --out DIR [--old-hw-v1-vocab VOCAB_JSON]

Writes a prepared subset (`data.prepared.write_subset`: manifest + vocab, images left where they are) of the
HELD_OUT records whose token string is the label of no record in any `--train` set, in any modality.

`--old-hw-v1-vocab` reproduces the shipped model's set (916 images): its `hw_v1` was drawn before the
synthetic-handwriting generator learnt to skip held-out formulas, so it also drops the held-out k12 and CROHME
formulas that generator could draw: every token in the CROHME train vocabulary given, at most 100 tokens
(docs/TRAINING_RUNS.md, tenth session).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texscribe.data.prepared import VOCAB, read_prepared_manifest, write_subset  # noqa: E402
from texscribe.latex import Vocab  # noqa: E402

OLD_HW_V1_SOURCES = ("k12", "crohme")  # the corpora the first hw_v1 drew formulas from
OLD_HW_V1_MAX_TOKENS = 100  # its --max-label-len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("held_out", type=Path, help="prepared held-out set (e.g. printed_render/held_out)")
    parser.add_argument("--train", type=Path, nargs="+", required=True, help="prepared training sets")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--old-hw-v1-vocab", type=Path, default=None,
                        help="vocab.json of prepared/crohme_train: drop what the first hw_v1 could draw")  # fmt: skip
    args = parser.parse_args()

    seen: set[tuple[str, ...]] = set()
    for folder in args.train:
        seen.update(tuple(r.tokens) for r in read_prepared_manifest(folder))
    held = read_prepared_manifest(args.held_out)
    kept = [r for r in held if tuple(r.tokens) not in seen]
    print(f"{len(held)} held out; {len(kept)} with a label in none of the {len(args.train)} training sets")
    if args.old_hw_v1_vocab is not None:
        crohme = set(Vocab.load(args.old_hw_v1_vocab).itos)
        kept = [
            r for r in kept
            if not (r.source in OLD_HW_V1_SOURCES and len(r.tokens) <= OLD_HW_V1_MAX_TOKENS
                    and set(r.tokens) <= crohme)
        ]  # fmt: skip
        print(f"{len(kept)} after dropping what the first hw_v1 could draw")
    write_subset(args.out, kept, Vocab.load(args.held_out / VOCAB))  # the held-out set's own vocabulary
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
