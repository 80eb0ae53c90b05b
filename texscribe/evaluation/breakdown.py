"""Group evaluation rows by label length and by the structures a formula contains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from texscribe.metrics import compute_all

# (label, lowest, highest) reference length in tokens, inclusive
LENGTH_BUCKETS: list[tuple[str, int, int]] = [
    ("1-5", 1, 5),
    ("6-10", 6, 10),
    ("11-20", 11, 20),
    ("21-30", 21, 30),
    ("31-50", 31, 50),
    ("51+", 51, 10**9),
]

_BIG_OPS = {"\\sum", "\\prod", "\\int", "\\iint", "\\iiint", "\\oint", "\\lim", "\\bigcup", "\\bigcap"}
_MATRIX = {"\\begin", "\\\\", "&", "\\matrix", "\\pmatrix", "\\bmatrix", "\\array", "\\cases"}

# (label, lowest score inclusive, highest exclusive) of the mean token probability (Prediction.score)
CONFIDENCE_BINS: list[tuple[str, float, float]] = [
    ("<0.50", 0.0, 0.5),
    ("0.50-0.70", 0.5, 0.7),
    ("0.70-0.80", 0.7, 0.8),
    ("0.80-0.90", 0.8, 0.9),
    ("0.90-0.95", 0.9, 0.95),
    ("0.95-0.99", 0.95, 0.99),
    (">=0.99", 0.99, 1.01),
]

# name -> test on the reference tokens; a formula can belong to several structures
STRUCTURES: dict[str, Callable[[Sequence[str]], bool]] = {
    "fraction": lambda t: any(x in ("\\frac", "\\dfrac", "\\tfrac") for x in t),
    "sub/superscript": lambda t: "^" in t or "_" in t,
    "root": lambda t: "\\sqrt" in t,
    "sum/integral": lambda t: any(x in _BIG_OPS for x in t),
    "matrix": lambda t: any(x in _MATRIX for x in t),
}


@dataclass
class Group:
    """Metrics of one subset: `n` rows and compute_all's values."""

    name: str
    n: int
    metrics: dict[str, float]


def length_bucket(n_tokens: int) -> str:
    for name, lo, hi in LENGTH_BUCKETS:
        if lo <= n_tokens <= hi:
            return name
    return "empty"


def by_length(preds: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> list[Group]:
    """One group per non-empty length bucket (by reference length), in bucket order."""
    names = [name for name, _, _ in LENGTH_BUCKETS] + ["empty"]
    keyed = [length_bucket(len(r)) for r in refs]
    return _groups(preds, refs, [(name, [k == name for k in keyed]) for name in names])


def by_structure(preds: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> list[Group]:
    """One group per structure found in some reference, plus `plain` (none of them)."""
    flags = {name: [test(r) for r in refs] for name, test in STRUCTURES.items()}
    plain = [not any(flags[name][i] for name in flags) for i in range(len(refs))]
    return _groups(preds, refs, [*flags.items(), ("plain", plain)])


def by_confidence(
    preds: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], scores: Sequence[float]
) -> list[Group]:
    """One group per confidence bin (see `CONFIDENCE_BINS`): does a higher score mean more exact matches?"""
    selections = [(name, [lo <= s < hi for s in scores]) for name, lo, hi in CONFIDENCE_BINS]
    return _groups(preds, refs, selections)


def _groups(preds, refs, selections: list[tuple[str, list[bool]]]) -> list[Group]:
    out = []
    for name, chosen in selections:
        p = [x for x, c in zip(preds, chosen) if c]
        r = [x for x, c in zip(refs, chosen) if c]
        if p:
            out.append(Group(name, len(p), compute_all(p, r)))
    return out
