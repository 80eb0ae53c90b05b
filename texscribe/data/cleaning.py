"""Cleaning rules: which samples a dataset keeps, and a reason code + detail for every one it drops.

A label rule is a function `(raw_latex, tokens) -> detail | None`; it returns a human-readable detail
when the label must be dropped. `LabelCleaner` runs the rules in order, after tokenising the label,
so each drop carries exactly one reason. Image rules (`no_ink`, `bad_image`) run where pixels are
decoded (`prepare`), reader-level reasons (`missing_image`, `malformed_line`...) come from readers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from texscribe.data.sample import Sample
from texscribe.errors import InputError, LabelError
from texscribe.latex import parse_label, split_label

# Every reason code a dropped item can carry, with what it means (used by the report).
REASONS: dict[str, str] = {
    "multiline": "several lines (\\\\ or an array/matrix/cases/aligned-like environment)",
    "one_line": "a one-line formula in a set of multi-line ones (`--multiline only`)",
    "ocr_error_marker": "label is an OCR-service artefact (empty, error word, text-only, no math content)",
    "out_of_vocab_chars": "label holds characters that are not LaTeX source (CJK, other non-ASCII)",
    "too_long": "more tokens than max_label_len",
    "bad_label": "label cannot be tokenised (LabelError) or breaks the manifest format",
    "missing_label": "image without a label",
    "missing_image": "label without an image",
    "bad_image": "image cannot be decoded (ImageError)",
    "no_ink": "image is blank",
    "malformed_line": "a caption/index/manifest line that does not parse",
    "duplicate_id": "id already used by an earlier item",
    "bad_id": "id holds a tab or line break (cannot be stored in the manifest)",
    "bad_index": "im2markup line index that is not a number or out of range",
    "wrong_encoding": "label file or line that does not decode (UTF-8, or UTF-16/32 with a BOM)",
    # from the InkML reader (texscribe.data.readers.inkml)
    "malformed_inkml": "InkML file with bad XML or unreadable trace data",
    "no_traces": "InkML file without pen traces",
    "bad_traces": "InkML traces that cannot show the expression: a coordinate not finite or beyond 1e9, "
    "all points at one place, or stray points far from the rest",
    "no_truth": "InkML file without a LaTeX truth annotation",
}

LabelRule = Callable[[str, Sequence[str]], "str | None"]

# Environments and commands that stack several rows: one image line cannot be read left to right.
MULTILINE_ENVS = (
    "array", "matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix", "cases",
    "dcases", "rcases", "aligned", "align", "alignat", "alignedat", "eqnarray", "gathered", "gather",
    "split", "multline", "subarray", "tabular", "CD",
)  # fmt: skip
MULTILINE_COMMANDS = frozenset(
    {"\\\\", "\\cr", "\\matrix", "\\pmatrix", "\\cases", "\\substack", "\\newline"}
)
_BEGIN_RE = re.compile(r"\\begin\{(" + "|".join(MULTILINE_ENVS) + r")\*?\}")
# Tokens that carry no math on their own: a label made only of these is OCR debris like `(*)` or `()()`.
PUNCTUATION = frozenset("()[]{},.;:!?'\"*`|") | {"\\%", "\\{", "\\}", "\\_", "\\&", "\\#"}
# Whole-label words an OCR service writes instead of a formula.
ERROR_WORDS = frozenset(
    {"error", "err", "failed", "failure", "fail", "null", "none", "nan", "undefined", "unknown", "timeout",
     "unrecognized", "unrecognised", "invalid", "empty", "n/a", "todo"}
)  # fmt: skip
_TEXT_GROUP_RE = re.compile(r"\\(?:text|mbox|textrm|textbf|textit)\s*\{([^{}]*)\}")
# Upright names (`\operatorname{card}`, `\begin{matrix}`) are math, never prose.
_NAME_GROUP_RE = re.compile(r"\\(?:operatorname\*?|mathrm|mathbf|mathit|begin|end)\s*\{[^{}]*\}")
_NOISE_RE = re.compile(r"\\[,;:! ]|\\quad|\\qquad|[\s~{}]")
# Prose: two or more plain words of 4+ letters not written as LaTeX commands ("the answer is ...").
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}(?![A-Za-z])")


def rule_multiline(raw: str, tokens: Sequence[str]) -> str | None:
    """Row separators or stacked environments (array, matrix, cases, aligned, eqnarray, gathered...)."""
    hit = next((t for t in tokens if t in MULTILINE_COMMANDS), None)
    if hit is None:
        m = _BEGIN_RE.search("".join(tokens)) or _BEGIN_RE.search(re.sub(r"\s+", "", raw))
        hit = m.group(0) if m else None
    return f"contains {hit}" if hit else None


def rule_ocr_error_marker(raw: str, tokens: Sequence[str]) -> str | None:
    """Labels an OCR service emits when it failed: blank, an error word, only `\\text{...}`, no math."""
    text = raw.strip().strip("$").strip()
    if not text:
        return "empty label"
    words = re.findall(r"[A-Za-z/]+", _TEXT_GROUP_RE.sub(r" \1 ", text))
    if words and all(w.lower() in ERROR_WORDS for w in words) and not re.search(r"[0-9=+]", text):
        return f"error marker {text[:40]!r}"
    inside = " ".join(_TEXT_GROUP_RE.findall(text)).strip()
    # Text alone is OCR debris (`\text { (1), }`, `\text { A. }`) unless it is plain letters such as
    # `\mbox{rot}` or `\mbox{w}\mbox{q}`, which CROHME truth labels do use (prose is caught below).
    if not _NOISE_RE.sub("", _TEXT_GROUP_RE.sub("", text)) and not re.fullmatch(r"[A-Za-z ]+", inside):
        return f"only \\text{{...}}: {text[:40]!r}"
    if tokens and all(t in PUNCTUATION for t in tokens):
        return f"no math content (punctuation only): {text[:40]!r}"
    prose = _WORD_RE.findall(_TEXT_GROUP_RE.sub(r" \1 ", _NAME_GROUP_RE.sub(" ", text)))
    if len(prose) >= 2:
        return f"plain-language text {' '.join(prose[:4])!r}"
    return None


def rule_out_of_vocab_chars(raw: str, tokens: Sequence[str]) -> str | None:
    """Characters that are not LaTeX source: LaTeX labels are ASCII; CJK and Unicode symbols are not."""
    bad = sorted({ch for ch in raw if ord(ch) > 126 or (ord(ch) < 32 and ch not in "\t\n\r")})
    if not bad:
        return None
    shown = " ".join(f"{ch!r}(U+{ord(ch):04X})" for ch in bad[:5])
    return f"{len(bad)} non-LaTeX character(s): {shown}"


# Order matters: the first rule that fires names the reason.
DEFAULT_RULES: dict[str, LabelRule] = {
    "out_of_vocab_chars": rule_out_of_vocab_chars,
    "multiline": rule_multiline,
    "ocr_error_marker": rule_ocr_error_marker,
}


def rule_one_line(raw: str, tokens: Sequence[str]) -> str | None:
    """The complement of `rule_multiline`: for a set of matrices, arrays and cases alone."""
    return None if rule_multiline(raw, tokens) else "one line (only multi-line formulas wanted)"


# What a dataset does with multi-line formulas: drop them (handwriting sources and the headline evaluation
# splits hold none), keep them (print that teaches a model matrices), or keep only them (their own figure).
MULTILINE_POLICIES = ("drop", "keep", "only")


def label_rules(multiline: str = "drop") -> dict[str, LabelRule]:
    """The default rules with `multiline` applied per `MULTILINE_POLICIES`."""
    if multiline not in MULTILINE_POLICIES:
        raise InputError(f"multiline must be one of {', '.join(MULTILINE_POLICIES)}, got {multiline!r}")
    rules = {k: v for k, v in DEFAULT_RULES.items() if multiline == "drop" or k != "multiline"}
    if multiline == "only":
        rules["one_line"] = rule_one_line
    return rules


@dataclass(frozen=True)
class Drop:
    """Why an item was dropped: a code from `REASONS` and a human detail naming the item."""

    reason: str
    detail: str


# Real captions average under 12 characters per token (the longest token, 25). A label longer than this
# many characters per allowed token is too long without being tokenised, which would take minutes for
# the 50 MB line of a malicious caption file.
MAX_CHARS_PER_TOKEN = 64


@dataclass
class LabelCleaner:
    """Tokenise a sample's label and apply label rules; `max_label_len=None` disables `too_long`."""

    max_label_len: int | None = 200
    rules: dict[str, LabelRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def __call__(self, sample: Sample) -> list[str] | Drop:
        """Normalised tokens of `sample.latex`, or the `Drop` explaining why the sample is unusable."""
        where = sample.origin
        if sample.latex is None:
            return Drop("missing_label", f"{where}: no label")
        raw = sample.latex
        if self.max_label_len is not None and len(raw) > MAX_CHARS_PER_TOKEN * self.max_label_len:
            return Drop(
                "too_long",
                f"{where}: {len(raw):,} characters, more than {MAX_CHARS_PER_TOKEN} per token allowed by "
                f"max_label_len {self.max_label_len} (not tokenised)",
            )
        try:
            tokens = split_label(raw) if sample.pretokenized else parse_label(strip_math_delimiters(raw))
        except LabelError as exc:
            return Drop("bad_label", f"{where}: {exc}")
        for reason, rule in self.rules.items():
            detail = rule(raw, tokens)
            if detail:
                return Drop(reason, f"{where}: {detail}")
        if not tokens:
            return Drop("ocr_error_marker", f"{where}: no tokens after normalisation")
        if self.max_label_len is not None and len(tokens) > self.max_label_len:
            return Drop("too_long", f"{where}: {len(tokens)} tokens > max_label_len {self.max_label_len}")
        spaced = next((t for t in tokens if any(ch.isspace() for ch in t)), None)
        if spaced is not None:
            return Drop("bad_label", f"{where}: token {spaced!r} contains white space")
        return tokens


_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def strip_math_delimiters(text: str) -> str:
    """`$x$`, `$$x$$`, `\\[x\\]`, `\\(x\\)` -> `x`: label files often keep the math-mode wrapper."""
    text = text.strip()
    for left, right in _DELIMITERS:
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text
