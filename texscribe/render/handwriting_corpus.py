"""The formulas synthetic handwriting is made of: CROHME train captions plus school formulas written only
with CROHME's symbols, never a formula of the CROHME 2014 test split.

`select_formulas` reads the sources through `texscribe.render.corpus.build_corpus` (the project's
normalisation and cleaning, one copy per distinct token sequence), then drops, with a reason each:
`out_of_crohme_vocab` (a token the CROHME train captions never use), `crohme_2014_formula` (tokens equal
to a 2014 test caption's), `printed_held_out` (a formula the printed renders hold out, by the same hash:
`corpus.DEFAULT_HELD_OUT_FRACTION`), `symbol_not_in_bank` (a symbol no InkML writer drew).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from texscribe.data.sample import Skipped
from texscribe.errors import InputError, LabelError
from texscribe.latex import split_label, to_text
from texscribe.render.corpus import (
    CROHME_SPLIT,
    DEFAULT_HELD_OUT_FRACTION,
    CorpusSpec,
    Formula,
    build_corpus,
    read_crohme_captions,
)

TEST_SPLIT = "2014"
DEFAULT_MAX_LEN = 100
SELECTION_REASONS = {
    "out_of_crohme_vocab": "holds a token the CROHME train captions never use",
    "crohme_2014_formula": "same tokens as a CROHME 2014 test caption (test formulas are never used)",
    "printed_held_out": "held out of the printed renders (formula hash): unseen in every modality",
    "symbol_not_in_bank": "holds a symbol no InkML writer drew (no glyph in the bank)",
}


@dataclass
class FormulaSelection:
    """The usable formulas, what was dropped (with reasons), items read per source, the CROHME vocabulary."""

    formulas: list[Formula] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    read: Counter = field(default_factory=Counter)
    vocab: set[str] = field(default_factory=set)
    missing_symbols: Counter = field(default_factory=Counter)


def caption_tokens(crohme_zip: Path, split: str) -> list[list[str]]:
    """The normalised tokens of every caption of one CoMER split (unparsable captions left out)."""
    out = []
    for item in read_crohme_captions(crohme_zip, split=split):
        try:
            out.append(split_label(item.latex or ""))
        except LabelError:
            continue
    if not out:
        raise InputError(f"no {split} captions read", source=str(crohme_zip))
    return out


def held_back_formulas(crohme_zip: Path) -> set[str]:
    """Token strings (space-joined, normalised) of every CROHME 2014 test caption."""
    return {to_text(tokens) for tokens in caption_tokens(crohme_zip, TEST_SPLIT)}


def select_formulas(
    crohme_zip: Path,
    extra: list[Path],
    drawable: Callable[[tuple[str, ...]], list[str]],
    *,
    max_len: int = DEFAULT_MAX_LEN,
) -> FormulaSelection:
    """CROHME train captions plus each `extra` formula file (raw LaTeX, one a line), restricted to the
    CROHME train vocabulary and `max_len` tokens, without 2014 test formulas. `drawable(tokens)` returns
    the symbols of `tokens` the glyph bank cannot draw (empty when all can)."""
    specs = [CorpusSpec("crohme", crohme_zip, "crohme")]
    specs += [CorpusSpec("file", path, path.stem) for path in extra]
    corpus = build_corpus(specs, max_label_len=max_len, held_out_fraction=DEFAULT_HELD_OUT_FRACTION)
    held_back = held_back_formulas(crohme_zip)
    selection = FormulaSelection(skipped=list(corpus.skipped), read=corpus.read)
    selection.vocab = {t for tokens in caption_tokens(crohme_zip, CROHME_SPLIT) for t in tokens}
    for formula in corpus.formulas:
        reason, detail = _drop(formula, selection, held_back, drawable)
        if reason:
            selection.skipped.append(
                Skipped(formula.id, formula.source, reason, f"{formula.origin}: {detail}")
            )
        else:
            selection.formulas.append(formula)
    return selection


def _drop(formula: Formula, selection: FormulaSelection, held_back: set[str], drawable) -> tuple[str, str]:
    outside = sorted(set(formula.tokens) - selection.vocab)
    if outside:
        return "out_of_crohme_vocab", " ".join(outside[:10])
    if to_text(formula.tokens) in held_back:
        return "crohme_2014_formula", to_text(formula.tokens)[:200]
    if formula.held_out:
        return "printed_held_out", to_text(formula.tokens)[:200]
    missing = drawable(formula.tokens)
    if missing:
        selection.missing_symbols.update(missing)
        return "symbol_not_in_bank", " ".join(missing)
    return "", ""
