"""Recognition metrics over token sequences: ExpRate, <=k errors, BLEU-4, edit score, CER, WER.

Every function takes predictions and references as parallel sequences whose items are either
token lists (`["x", "^", "{", "2", "}"]`) or raw LaTeX strings (tokenised with `latex.tokenize`).
Both sides go through the same `latex.normalize` (lenient) before comparison, so spelling variants
(`x^2` vs `x^{2}`, `\\le` vs `\\leq`) never count as errors.

All values are fractions in [0, 1] (CER/WER can exceed 1 when predictions are much longer than
references). Definitions:

- `exprate`: fraction of predictions whose token sequence equals the reference exactly.
- `within_k_errors(k)`: fraction within token-level Levenshtein distance <= k (CROHME "<=1", "<=2").
- `bleu4`: corpus BLEU-4 (Papineni et al.): clipped 1..4-gram precisions summed over the corpus,
  geometric mean with uniform weights, brevity penalty exp(1 - r/c) when c < r; no smoothing
  (0 when some n-gram order has no match).
- `edit_score`: 1 - sum(token distance) / sum(max(len(pred), len(ref))) over the corpus
  (im2latex "edit distance" score; 1 = perfect).
- `cer`: sum(character distance) / sum(reference characters), on the `latex.to_latex` strings.
- `wer`: sum(token distance) / sum(reference tokens).
- `course_average`: mean of BLEU-4, ExpRate and edit score (the im2latex course's headline number).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from texscribe.latex import latex_string, normalize_lenient, tokenize

TokenInput = Sequence[str] | str


def normalize_all(seqs: Sequence[TokenInput]) -> list[list[str]]:
    """Token lists (raw strings tokenised) passed through `latex.normalize_lenient`: a malformed model
    output (unbalanced braces) is compared as emitted, so a missing `}` costs one edit instead of failing."""
    return [normalize_lenient(tokenize(s) if isinstance(s, str) else list(s)) for s in seqs]


def token_distance(pred: Sequence[str], ref: Sequence[str]) -> int:
    """Levenshtein distance between two token lists (each token one symbol)."""
    return Levenshtein.distance(list(pred), list(ref))


def exprate(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """Expression recognition rate: fraction of exact matches after normalisation."""
    p, r = _pair(preds, refs)
    return _exprate(p, r)


def within_k_errors(preds: Sequence[TokenInput], refs: Sequence[TokenInput], k: int) -> float:
    """Fraction of predictions within `k` token edits (insert/delete/substitute) of the reference."""
    p, r = _pair(preds, refs)
    return _within(p, r, k)


def bleu4(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """Corpus BLEU-4 with one reference per prediction (see module docstring)."""
    p, r = _pair(preds, refs)
    return _bleu(p, r, 4)


def edit_score(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """1 - corpus-normalised token Levenshtein distance."""
    p, r = _pair(preds, refs)
    return _edit_score(p, r)


def cer(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """Character error rate on the joined LaTeX strings."""
    p, r = _pair(preds, refs)
    return _cer(p, r)


def wer(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """Token ("word") error rate: total token edits / total reference tokens."""
    p, r = _pair(preds, refs)
    return _wer(p, r)


def course_average(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> float:
    """Mean of BLEU-4, ExpRate and edit score."""
    p, r = _pair(preds, refs)
    return (_bleu(p, r, 4) + _exprate(p, r) + _edit_score(p, r)) / 3


def compute_all(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> dict[str, float]:
    """Every metric at once (inputs normalised once). Keys: n, exp_rate, le1, le2, bleu4, edit_score,
    cer, wer, course_average."""
    p, r = _pair(preds, refs)
    out: dict[str, float] = {
        "n": len(p),
        "exp_rate": _exprate(p, r),
        "le1": _within(p, r, 1),
        "le2": _within(p, r, 2),
        "bleu4": _bleu(p, r, 4),
        "edit_score": _edit_score(p, r),
        "cer": _cer(p, r),
        "wer": _wer(p, r),
    }
    out["course_average"] = (out["bleu4"] + out["exp_rate"] + out["edit_score"]) / 3
    return out


# --- implementations on already-normalised token lists ---------------------------------------


def _pair(preds: Sequence[TokenInput], refs: Sequence[TokenInput]) -> tuple[list[list[str]], list[list[str]]]:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references; they must be parallel")
    return normalize_all(preds), normalize_all(refs)


def _exprate(p: list[list[str]], r: list[list[str]]) -> float:
    return sum(a == b for a, b in zip(p, r)) / len(p) if p else 0.0


def _within(p: list[list[str]], r: list[list[str]], k: int) -> float:
    if not p:
        return 0.0
    # score_cutoff lets rapidfuzz stop early once the distance exceeds k
    return sum(Levenshtein.distance(a, b, score_cutoff=k) <= k for a, b in zip(p, r)) / len(p)


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _bleu(p: list[list[str]], r: list[list[str]], max_n: int) -> float:
    hyp_len = sum(len(a) for a in p)
    ref_len = sum(len(b) for b in r)
    if hyp_len == 0:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        matched = total = 0
        for a, b in zip(p, r):
            hyp, ref = _ngrams(a, n), _ngrams(b, n)
            matched += sum(min(c, ref[g]) for g, c in hyp.items())
            total += max(len(a) - n + 1, 0)
        if matched == 0:
            return 0.0
        log_precision += math.log(matched / total) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def _edit_score(p: list[list[str]], r: list[list[str]]) -> float:
    denom = sum(max(len(a), len(b)) for a, b in zip(p, r))
    if denom == 0:
        return 1.0 if p else 0.0
    return 1.0 - sum(token_distance(a, b) for a, b in zip(p, r)) / denom


def _cer(p: list[list[str]], r: list[list[str]]) -> float:
    pred_s, ref_s = [latex_string(a) for a in p], [latex_string(b) for b in r]
    dist = sum(Levenshtein.distance(a, b) for a, b in zip(pred_s, ref_s))
    return dist / max(1, sum(len(b) for b in ref_s))


def _wer(p: list[list[str]], r: list[list[str]]) -> float:
    dist = sum(token_distance(a, b) for a, b in zip(p, r))
    return dist / max(1, sum(len(b) for b in r))
