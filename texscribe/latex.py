"""LaTeX tokens: the one source of truth for how formulas become token sequences and back.

- `tokenize(text)` splits raw LaTeX into control words (`\\frac`), control symbols (`\\{`),
  and single characters; white space separates tokens and is otherwise dropped.
- `normalize(tokens)` maps common spelling variants onto one canonical form so that equal
  formulas compare equal (see `NormalizeOptions`).
- `to_latex(tokens)` joins tokens back into valid LaTeX.
- `Vocab` maps tokens to ids and travels with every dataset and checkpoint as JSON.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from texscribe.errors import LabelError

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)

_TOKEN_RE = re.compile(r"\\[a-zA-Z]+\*?|\\.|\S", re.DOTALL)


def tokenize(text: str) -> list[str]:
    """Split raw LaTeX into tokens. Raises `LabelError` for input that is not a string or ends in a lone `\\`."""
    if not isinstance(text, str):
        raise LabelError(f"label must be a string, got {type(text).__name__}")
    text = text.strip()
    if text.endswith("\\") and not text.endswith("\\\\"):
        raise LabelError(f"label ends with a lone backslash: {text[-20:]!r}")
    return _TOKEN_RE.findall(text)


def to_latex(tokens: Sequence[str]) -> str:
    """Join tokens into LaTeX: a space only where needed (after a control word followed by a letter)."""
    out: list[str] = []
    for tok in tokens:
        if out and _needs_space(out[-1], tok):
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _needs_space(prev: str, tok: str) -> bool:
    return bool(re.fullmatch(r"\\[a-zA-Z]+\*?", prev)) and (tok[:1].isalpha())


@dataclass(frozen=True)
class NormalizeOptions:
    """Which variant-folding rules `normalize` applies."""

    drop_spacing: bool = True  # \, \; \quad ... carry no content for recognition
    drop_style: bool = True  # \displaystyle, \limits, \left/\right sizes
    brace_arguments: bool = True  # x^2 -> x^{2}; \frac12 -> \frac{1}{2}


SYNONYMS: dict[str, list[str]] = {
    "\\lt": ["<"],
    "\\gt": [">"],
    "\\le": ["\\leq"],
    "\\ge": ["\\geq"],
    "\\leqslant": ["\\leq"],
    "\\geqslant": ["\\geq"],
    "\\ne": ["\\neq"],
    "\\to": ["\\rightarrow"],
    "\\gets": ["\\leftarrow"],
    "\\lbrace": ["\\{"],
    "\\rbrace": ["\\}"],
    "\\vert": ["|"],
    "\\lvert": ["|"],
    "\\rvert": ["|"],
    "\\dots": ["\\ldots"],
    "\\dotsc": ["\\ldots"],
    "\\dotsb": ["\\cdots"],
    "\\lbrack": ["["],
    "\\rbrack": ["]"],
    "\\varepsilon": ["\\epsilon"],
    "\\neg": ["\\lnot"],
}
SPACING = {"\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "~", "\\enspace", "\\thinspace"}
STYLE = {
    "\\displaystyle", "\\textstyle", "\\scriptstyle", "\\limits", "\\nolimits",
    "\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr",
}  # fmt: skip
# Commands whose arguments get braces when written bare (x^2, \frac12, \sqrt2).
_ARITY = {"^": 1, "_": 1, "\\frac": 2, "\\dfrac": 2, "\\tfrac": 2, "\\sqrt": 1, "\\overline": 1, "\\hat": 1,
          "\\vec": 1, "\\bar": 1, "\\mathrm": 1, "\\mathbf": 1, "\\text": 1, "\\dot": 1, "\\tilde": 1}  # fmt: skip


def normalize(tokens: Sequence[str], options: NormalizeOptions | None = None) -> list[str]:
    """Fold spelling variants onto one canonical token sequence (idempotent)."""
    opts = options or NormalizeOptions()
    out: list[str] = []
    for tok in tokens:
        if opts.drop_spacing and tok in SPACING:
            continue
        if opts.drop_style and tok in STYLE:
            continue
        out.extend(SYNONYMS.get(tok, [tok]))
    if opts.brace_arguments:
        out = _brace_arguments(out)
    return out


def _brace_arguments(tokens: list[str]) -> list[str]:
    """Wrap bare single-token arguments in braces: `x ^ 2` -> `x ^ { 2 }`, `\\frac 1 2` -> `\\frac { 1 } { 2 }`."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        out.append(tok)
        i += 1
        if tok not in _ARITY:
            continue
        if tok == "\\sqrt" and i < len(tokens) and tokens[i] == "[":
            close = _matching(tokens, i, "[", "]")
            out.extend(_brace_arguments(tokens[i:close]))
            i = close
        for _ in range(_ARITY[tok]):
            if i >= len(tokens) or tokens[i] in ("}", "]", "^", "_"):
                break
            if tokens[i] == "{":
                close = _matching(tokens, i, "{", "}")
                out.extend(_brace_arguments(tokens[i:close]))
                i = close
            else:
                out.extend(["{", tokens[i], "}"])
                i += 1
    return out


def _matching(tokens: list[str], start: int, open_: str, close: str) -> int:
    """Index just past the group opened at `start` (or the end, for unbalanced input)."""
    depth = 0
    for j in range(start, len(tokens)):
        if tokens[j] == open_:
            depth += 1
        elif tokens[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def split_label(text: str) -> list[str]:
    """Tokens of an already space-tokenised label (CROHME captions, im2latex .lst), normalised."""
    return normalize(text.split())


def parse_label(text: str) -> list[str]:
    """Tokens of a raw LaTeX label, normalised."""
    return normalize(tokenize(text))


class Vocab:
    """Token <-> id mapping with the four specials first (`<pad>`=0, `<sos>`=1, `<eos>`=2, `<unk>`=3)."""

    def __init__(self, tokens: Iterable[str]):
        seen = dict.fromkeys(SPECIALS)
        for tok in tokens:
            seen.setdefault(tok, None)
        self.itos: list[str] = list(seen)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Ids -> tokens, stopping at `<eos>` when `strip_specials`."""
        out = []
        for i in ids:
            i = int(i)
            if strip_specials:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.sos_id):
                    continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Vocabulary from token sequences, most frequent first (ties alphabetical, so builds are reproducible)."""
        counts = Counter(t for seq in sequences for t in seq)
        ordered = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(ordered)

    def to_json(self) -> str:
        return json.dumps({"tokens": self.itos}, ensure_ascii=False, indent=0)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_list(cls, itos: Sequence[str]) -> Vocab:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise LabelError(f"vocabulary must start with {SPECIALS}, got {tuple(itos[:4])}")
        return cls(itos[len(SPECIALS) :])

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_list(data["tokens"])
