"""Sub-expressions of a CROHME InkML file: its MathML tree as project tokens, the structurally complete
parts of that tree with the pen traces that draw them, and their images (issue 17, lever (b)).

A CROHME InkML file holds a presentation-MathML tree (`<annotationXML>`) whose leaves and drawn
structure (a fraction's bar, a root's sign) carry `xml:id`s, and one trace group per symbol whose
`href` names such an id. `mathml_tokens` writes a subtree in the project's token scheme (normalised by
`texscribe.latex`); it is trusted for a file only when the WHOLE tree gives the file's own truth label.
`file_parts` lists the sub-expressions with at least two drawn symbols (fraction numerators and
denominators, radicands, script nodes and their bases, under/over bodies, contiguous runs of a row);
`choose_parts` keeps a seeded, varied few; `render_part` draws only a part's traces at the scale of the
whole file's rendering, so its symbols are as large as in the full-expression image.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from texscribe.data.readers.inkml import InkmlDocument
from texscribe.data.render_strokes import RenderOptions, render_strokes, stroke_scale
from texscribe.errors import LabelError
from texscribe.images import crop_to_ink, load_image
from texscribe.latex import LABEL_OPTIONS, NormalizeOptions, normalize, parse_label, to_text, tokenize
from texscribe.render.glyph_bank import symbol_token

_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
PREPARE_MARGIN = 4  # px of background around the cropped ink: `texscribe data prepare`'s default
MIN_SYMBOLS = 2  # a part draws at least this many symbols
# Script elements: (tag, LaTeX script markers after the base, in MathML child order).
_SCRIPTS = {
    "msub": ("_",),
    "msup": ("^",),
    "msubsup": ("_", "^"),
    "munder": ("_",),
    "mover": ("^",),
    "munderover": ("_", "^"),
}
_UNDER_OVER = {"munder": ("under",), "mover": ("over",), "munderover": ("under", "over")}
# Leaf texts that some CROHME files write without their backslash (`infty`, `im` for `\lim`).
_BARE_NAMES = {"im": "\\lim", "ctdot": "\\cdots", "ne": "\\neq", "·": "\\cdot"}
# A run of a row neither starts with nor ends on these (they need an operand on that side).
_NEEDS_LEFT = {"+", "=", "\\times", "\\div", "\\pm", "<", ">", "\\leq", "\\geq", "\\neq", "\\rightarrow",
               ",", "/", "\\cdot", "!", "\\in", "\\prime", "."}  # fmt: skip
_NEEDS_RIGHT = _NEEDS_LEFT - {"!", "\\prime", "."} | {"-", "\\sum", "\\int", "\\lim", "\\sqrt", "\\forall"}
_PAIRS = {"(": ")", "[": "]", "\\{": "\\}"}
# A symbol label -> the tokens it may stand for (CROHME labels `\cdot` symbols `.`, `\cdots` ones `\ldots`).
_AMBIGUOUS = {".": [".", "\\cdot"], "\\ldots": ["\\ldots", "\\cdots"]}
# A made-up element grouping three `.` symbols of a row, read as `. . .` ([]: each dot as itself),
# `\cdots` or `\ldots` (some writers' `\cdots` is three separate dots).
_DOTS = "texscribe-dots"
_DOTS_OPTIONS: list[list[str]] = [[], ["\\cdots"], ["\\ldots"]]
MAX_READINGS = 256
_SPELLED = NormalizeOptions(fill_missing_arguments=False, spelled_functions=True)


class MathmlError(ValueError):
    """A MathML element the converter cannot write as tokens (an unknown tag, a missing child)."""


@dataclass(frozen=True)
class Part:
    """A sub-expression: `kind` (numerator, run, ...), its normalised tokens, the symbol ids it draws."""

    kind: str
    tokens: tuple[str, ...]
    symbols: frozenset[str]


def local(tag: str) -> str:
    """`{namespace}mfrac` -> `mfrac`."""
    return tag.rsplit("}", 1)[-1]


def math_root(doc: InkmlDocument) -> ET.Element | None:
    """The `<math>` element of the file's MathML annotation, or None."""
    if doc.mathml is None:
        return None
    return next((e for e in doc.mathml.iter() if local(e.tag) == "math"), None)


def symbol_tokens(doc: InkmlDocument) -> dict[str, str]:
    """MathML id -> the project token of the symbol drawn for it (its trace group's label)."""
    out = {}
    for symbol in doc.symbols:
        token = symbol_token(symbol.label)
        if symbol.href and token:
            out[symbol.href] = token
    return out


# --------------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Reading:
    """How a file's MathML is read as tokens: each leaf's token by `xml:id` (its symbol's label), and which
    alternative reading each ambiguous element takes (`choices`, by its key; absent: the first). CROHME labels
    a `\\cdot` symbol `.`, a `\\cdots` `\\ldots`, and draws some `\\cdots` as three `.` symbols; the
    reading that gives the file's truth settles which is meant (`resolve_reading`)."""

    labels: dict[str, str]
    choices: dict[str, int] = field(default_factory=dict)


def mathml_tokens(el: ET.Element, reading: Reading) -> list[str]:
    """Raw project tokens of a MathML element (not yet normalised). A leaf's token is its symbol's label
    when it has one, else its text. Raises `MathmlError`."""
    tag = local(el.tag)
    kids = list(el)
    if tag in ("mi", "mn", "mo", "mtext"):
        options = _leaf_options(el, reading.labels)
        return [options[reading.choices.get(el.get(_XML_ID) or "", 0) % len(options)]]
    if tag == _DOTS:
        option = _DOTS_OPTIONS[reading.choices.get(_key(el), 0)]
        return option if option else [t for kid in kids for t in mathml_tokens(kid, reading)]
    if tag in ("math", "mrow", "mstyle"):
        return [t for kid in row_items(el, reading) for t in mathml_tokens(kid, reading)]
    if tag == "mfrac":
        _arity(el, 2)
        return ["\\frac", *_braced(kids[0], reading), *_braced(kids[1], reading)]
    if tag == "msqrt":
        return [
            "\\sqrt",
            "{",
            *[t for kid in row_items(el, reading) for t in mathml_tokens(kid, reading)],
            "}",
        ]
    if tag == "mroot":
        _arity(el, 2)
        return ["\\sqrt", "[", *mathml_tokens(kids[1], reading), "]", *_braced(kids[0], reading)]
    if tag in _SCRIPTS:
        _arity(el, 1 + len(_SCRIPTS[tag]))
        out = mathml_tokens(kids[0], reading)
        for marker, kid in zip(_SCRIPTS[tag], kids[1:]):
            out += [marker, *_braced(kid, reading)]
        return out
    raise MathmlError(f"unsupported MathML element <{tag}>")


def _leaf_options(el: ET.Element, labels: dict[str, str]) -> list[str]:
    """The tokens a leaf may stand for, its most likely first."""
    ident = el.get(_XML_ID)
    if ident in labels:
        token = labels[ident]
    else:
        token = _leaf_text_token(el)
    return _AMBIGUOUS.get(token, [token])


def _leaf_text_token(el: ET.Element) -> str:
    text = (el.text or "").strip()
    if not text:
        raise MathmlError(f"empty <{local(el.tag)}> without a symbol")
    if text in _BARE_NAMES:
        return _BARE_NAMES[text]
    if len(text) > 1 and text.isalpha():  # `infty`, `sin`: a command written without its backslash
        text = "\\" + text
    tokens = tokenize(text)
    if len(tokens) != 1:
        raise MathmlError(f"leaf text {text!r} is not one token")
    return tokens[0]


def _braced(el: ET.Element, reading: Reading) -> list[str]:
    return ["{", *mathml_tokens(el, reading), "}"]


def _arity(el: ET.Element, n: int) -> None:
    if len(el) != n:
        raise MathmlError(f"<{local(el.tag)}> has {len(el)} children, expected {n}")


def _key(el: ET.Element) -> str:
    """The key of an element's reading choice: its id, or its first child's (a group of dots)."""
    ident = el.get(_XML_ID)
    return ident if ident is not None else _key(el[0]) if len(el) else ""


def row_items(el: ET.Element, reading: Reading | None = None) -> list[ET.Element]:
    """The items of a row: nested `mrow`s (CROHME writes long rows as right-branching pairs) flattened, and
    three `.` symbols in a row grouped as one item (they may be a `\\cdots`)."""
    flat: list[ET.Element] = []
    for kid in el:
        flat.extend(row_items(kid) if local(kid.tag) == "mrow" else [kid])
    labels = reading.labels if reading else {}
    items: list[ET.Element] = []
    k = 0
    while k < len(flat):
        trio = flat[k : k + 3]
        if len(trio) == 3 and all(_is_dot(e, labels) for e in trio):
            group = ET.Element(_DOTS)
            group.extend(trio)
            items.append(group)
            k += 3
        else:
            items.append(flat[k])
            k += 1
    return items


def _is_dot(el: ET.Element, labels: dict[str, str]) -> bool:
    if local(el.tag) not in ("mi", "mn", "mo"):
        return False
    ident = el.get(_XML_ID)
    return (labels[ident] if ident in labels else (el.text or "").strip()) == "."


def ambiguous_keys(root: ET.Element, reading: Reading) -> dict[str, int]:
    """Key -> number of readings of every ambiguous element under `root`."""
    out = {}
    for el in _walk(root, reading):
        if local(el.tag) == _DOTS:
            out[_key(el)] = len(_DOTS_OPTIONS)
        elif local(el.tag) in ("mi", "mn", "mo") and len(_leaf_options(el, reading.labels)) > 1:
            out[_key(el)] = len(_leaf_options(el, reading.labels))
    return out


def _walk(el: ET.Element, reading: Reading) -> Iterator[ET.Element]:
    """Every element under `el` as the converter sees it (rows flattened, dot groups made), dot groups'
    own dots left out (a group is read as a whole)."""
    yield el
    if local(el.tag) == _DOTS:
        return
    kids = row_items(el, reading) if local(el.tag) in ("math", "mrow", "mstyle", "msqrt") else list(el)
    for kid in kids:
        yield from _walk(kid, reading)


def normalised(tokens: Sequence[str]) -> tuple[str, ...]:
    """Tokens in the project's canonical form (as labels are normalised); `LabelError` when malformed."""
    return tuple(normalize(tokens, LABEL_OPTIONS))


def truth_tokens(doc: InkmlDocument) -> tuple[str, ...] | None:
    """The file's truth label as normalised tokens (as `texscribe data prepare` reads it), or None."""
    if not doc.truth:
        return None
    try:
        return tuple(parse_label(doc.truth))
    except LabelError:
        return None


def resolve_reading(doc: InkmlDocument) -> tuple[Reading | None, str]:
    """(the reading of the file's MathML that gives its truth label, or None; the converted text or why not).

    Ambiguous elements are tried in every combination (`MAX_READINGS` at most, else all-first and the
    single changes). The comparison also folds function names spelled as letters (`l o g` in some truths,
    `\\log` symbols in the tree)."""
    root = math_root(doc)
    truth = truth_tokens(doc)
    if root is None or truth is None:
        return None, "no MathML tree" if root is None else "no readable truth label"
    base = Reading(symbol_tokens(doc))
    target = _comparable(truth)
    first = ""
    for choices in _combinations(ambiguous_keys(root, base)):
        reading = Reading(base.labels, choices)
        try:
            converted = normalised(mathml_tokens(root, reading))
        except (MathmlError, LabelError) as exc:
            return None, f"error: {exc}"
        first = first or to_text(converted)
        if _comparable(converted) == target:
            return reading, to_text(converted)
    return None, first


def _comparable(tokens: Sequence[str]) -> tuple[str, ...]:
    return tuple(normalize(tokens, _SPELLED))


def _combinations(counts: dict[str, int]) -> Iterator[dict[str, int]]:
    """Choice dicts: the all-first reading, then every combination when there are few, else each single change."""
    yield {}
    keys = sorted(counts)
    total = int(np.prod([counts[k] for k in keys])) if keys else 1
    if total <= MAX_READINGS:
        for combo in itertools.islice(itertools.product(*(range(counts[k]) for k in keys)), 1, None):
            yield {k: c for k, c in zip(keys, combo) if c}
        return
    for k in keys:
        for c in range(1, counts[k]):
            yield {k: c}


def tree_matches(doc: InkmlDocument) -> tuple[bool, str]:
    """(whether the whole MathML tree converts to the file's truth, the converted text or the error)."""
    reading, text = resolve_reading(doc)
    return reading is not None, text


# ---------------------------------------------------------------------------------------------- parts
def drawn_ids(els: Sequence[ET.Element], drawn: set[str]) -> frozenset[str]:
    """The ids under `els` that a symbol draws (leaves, fraction bars, root signs)."""
    return frozenset(i for el in els for e in el.iter() if (i := e.get(_XML_ID)) in drawn)


def file_parts(doc: InkmlDocument, reading: Reading, max_run: int | None = None) -> list[Part]:
    """Every structurally complete sub-expression of the file with >= `MIN_SYMBOLS` drawn symbols, not
    the whole expression, one per distinct token sequence (the first found, outer before inner, longer
    runs before shorter). `reading`: the file's resolved reading (`resolve_reading`). `max_run`: longest
    run of row items (None: any shorter than the row)."""
    root = math_root(doc)
    if root is None:
        return []
    drawn = {s.href for s in doc.symbols if s.href and s.traces}
    whole = drawn_ids([root], drawn)
    seen: set[tuple[str, ...]] = set()
    parts = []
    for kind, els in _candidates(root, reading, max_run):
        symbols = drawn_ids(els, drawn)
        if len(symbols) < MIN_SYMBOLS or symbols == whole:
            continue
        try:
            tokens = normalised([t for el in els for t in mathml_tokens(el, reading)])
        except (MathmlError, LabelError):
            continue
        if not tokens or tokens in seen or not _balanced(tokens):
            continue
        if kind == "run" and (tokens[0] in _NEEDS_LEFT or tokens[-1] in _NEEDS_RIGHT):
            continue
        seen.add(tokens)
        parts.append(Part(kind, tokens, symbols))
    return parts


def _candidates(
    el: ET.Element, reading: Reading, max_run: int | None
) -> Iterator[tuple[str, list[ET.Element]]]:
    """(kind, elements) of each candidate sub-expression under `el`, outer ones first."""
    tag = local(el.tag)
    kids = list(el)
    if tag in ("math", "mrow", "mstyle", "msqrt"):
        items = row_items(el, reading)
        if tag == "msqrt":
            yield "radicand", items
        yield from _runs(items, max_run)
        for item in items:
            yield from _candidates(item, reading, max_run)
        return
    if tag == "mfrac" and len(kids) == 2:
        yield "numerator", [kids[0]]
        yield "denominator", [kids[1]]
    elif tag == "mroot" and len(kids) == 2:
        yield "radicand", [kids[0]]
    elif tag in _SCRIPTS and len(kids) == 1 + len(_SCRIPTS[tag]):
        yield "script", [el]
        yield "base", [kids[0]]
        for name, kid in zip(_UNDER_OVER.get(tag, ()), kids[1:]):
            yield name, [kid]
    for kid in kids:
        yield from _candidates(kid, reading, max_run)


def _runs(items: list[ET.Element], max_run: int | None) -> Iterator[tuple[str, list[ET.Element]]]:
    """Contiguous runs of 2..len-1 row items, longest first."""
    longest = len(items) - 1 if max_run is None else min(max_run, len(items) - 1)
    for size in range(longest, 1, -1):
        for start in range(len(items) - size + 1):
            yield "run", items[start : start + size]


def _balanced(tokens: Sequence[str]) -> bool:
    """Whether the brackets ( ) [ ] \\{ \\} of `tokens` pair up (a run may not cut a bracketed group)."""
    stack: list[str] = []
    for t in tokens:
        if t in _PAIRS:
            stack.append(_PAIRS[t])
        elif t in _PAIRS.values() and (not stack or stack.pop() != t):
            return False
    return not stack


# --------------------------------------------------------------------------------------------- choice
def choose_parts(parts: Sequence[Part], limit: int, seed: int, file_id: str) -> list[Part]:
    """At most `limit` parts, a seeded choice (seed, file id) that prefers variety and length: kinds are
    taken in turn (in a shuffled order), and within a kind a part is drawn with a weight of its symbol
    count squared."""
    if len(parts) <= limit:
        return list(parts)
    rng = np.random.default_rng([seed, zlib.crc32(file_id.encode("utf-8"))])
    by_kind: dict[str, list[Part]] = {}
    for part in parts:
        by_kind.setdefault(part.kind, []).append(part)
    kinds = [k for k in rng.permutation(sorted(by_kind))]
    chosen: list[Part] = []
    while len(chosen) < limit:
        for kind in list(kinds):
            pool = by_kind[kind]
            if not pool or len(chosen) == limit:
                continue
            weights = np.array([len(p.symbols) ** 2 for p in pool], dtype=np.float64)
            pick = int(rng.choice(len(pool), p=weights / weights.sum()))
            chosen.append(pool.pop(pick))
            _drop_same_symbols(by_kind, chosen[-1])
        if not any(by_kind.values()):
            break
    return chosen


def _drop_same_symbols(by_kind: dict[str, list[Part]], part: Part) -> None:
    """Parts drawing exactly the symbols of a chosen one (a script node and the run holding only it) go."""
    for kind, pool in by_kind.items():
        by_kind[kind] = [p for p in pool if p.symbols != part.symbols]


# ---------------------------------------------------------------------------------------------- image
def part_traces(doc: InkmlDocument, symbols: frozenset[str]) -> list[np.ndarray]:
    """The pen traces of the symbols with ids in `symbols`, in file order."""
    indices = sorted({i for s in doc.symbols if s.href in symbols for i in s.traces})
    return [doc.traces[i] for i in indices]


def file_scale(doc: InkmlDocument, options: RenderOptions | None = None) -> float:
    """Pixels per InkML unit of the whole file's rendering (its reference stroke height from ALL strokes)."""
    return stroke_scale(doc.traces, options or RenderOptions())


def render_part(
    traces: Sequence[np.ndarray], scale: float, options: RenderOptions | None = None
) -> np.ndarray:
    """A part's traces drawn at `scale` px per unit and cropped as `data prepare` crops: float32 (H, W)
    in [0, 1], ink bright."""
    base = options or RenderOptions()
    opts = RenderOptions(
        scale=scale,
        line_width=base.line_width,
        padding=base.padding,
        antialias=base.antialias,
        max_side=base.max_side,
    )
    return crop_to_ink(load_image(render_strokes(traces, opts)), margin=PREPARE_MARGIN)
