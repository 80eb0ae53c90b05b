"""Where each symbol of a formula goes: matplotlib mathtext lays the formula out, we read back its boxes.

`layout_formula(tokens)` returns one `SymbolBox` per drawn symbol, in points (10 pt type, y downwards,
the formula's baseline at y = 0): glyphs (`x`, `\\alpha`, `(`), function names as one box (`\\sin`, as
CROHME writers' trace groups have them), each fraction bar (`FRACTION_BAR`, a rule mathtext draws) and
each root (`\\sqrt`: the radical glyph joined with its overbar rule). Every box's token is checked
against the formula: the drawn symbols must be exactly the formula's drawable tokens, or the layout is
refused (`LayoutFailure`), so an image never shows something other than its label.

The STIX font set is used because its glyphs carry Unicode code points, which map back to tokens by
laying out each token alone once (`_token_glyph`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from texscribe.errors import LabelError
from texscribe.latex import to_latex

FRACTION_BAR = "\\frac"  # the token a fraction bar stands for
ROOT = "\\sqrt"
FONT_SIZE = 10.0  # pt; every box is measured at this type size
_FONTSET = "stix"
_STRUCTURE = {"{", "}", "^", "_", "\\limits", "\\nolimits"}  # tokens that draw nothing themselves
_OPENING = {"(": ")", "[": "]", "\\{": "\\}"}
_RULE_AT_10PT = 0.62  # mathtext's fraction rule thickness at 10 pt (STIX), to tell a rule's type size
_MAX_CHARS = 2000


@dataclass(frozen=True)
class SymbolBox:
    """One symbol to draw: `token`, `kind` (glyph, function, bar, root), its ink box in pt (y down,
    baseline 0) and `size`, the type size in pt it was set in (10 in the main line, 7 in scripts...).
    A root's radicand starts at `inner_x0` (where the radical sign meets its overbar)."""

    token: str
    kind: str
    x0: float
    y0: float
    x1: float
    y1: float
    size: float
    inner_x0: float | None = None

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class LayoutFailure:
    """Why a formula could not be laid out: `cause` is a reason code for reports, `detail` says more."""

    cause: str
    detail: str


LAYOUT_FAILURES = {
    "mathtext_unsupported": "matplotlib mathtext cannot parse the formula",
    "layout_mismatch": "the laid-out symbols differ from the formula's drawable tokens",
}


def drawable_tokens(tokens: Sequence[str]) -> Counter:
    """The symbols a formula draws: every token but braces, scripts and a root's `[ ]` index delimiters;
    `\\frac` is its bar."""
    out: Counter = Counter()
    skip_close: list[int] = []  # brace depths at which an index's `]` closes
    depth = 0
    for i, tok in enumerate(tokens):
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        if tok == "[" and i > 0 and tokens[i - 1] == ROOT:
            skip_close.append(depth)
            continue
        if tok == "]" and skip_close and skip_close[-1] == depth:
            skip_close.pop()
            continue
        if tok not in _STRUCTURE:
            out[tok] += 1
    return out


def mathtext_source(tokens: Sequence[str], *, display_fractions: bool, tall_delimiters: bool) -> str:
    """The LaTeX mathtext lays out: `\\dfrac` (full-size numerators, as people write them) when
    `display_fractions`, and `\\left( ... \\right)` around bracket pairs holding a fraction when
    `tall_delimiters` (written brackets grow with what they hold). The label's tokens are unchanged."""
    out = [("\\dfrac" if display_fractions and t == FRACTION_BAR else t) for t in tokens]
    if tall_delimiters:
        for open_, close in _tall_pairs(tokens):
            out[open_] = f"\\left{tokens[open_]}"
            out[close] = f"\\right{tokens[close]}"
    return "".join(_latex(t) for t in out)


def _latex(token: str) -> str:
    if token.startswith(("\\left", "\\right")):
        return token + " "
    return to_latex([token]) + (" " if token[0] == "\\" and token[-1].isalpha() else "")


def _tall_pairs(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs of matched `( )`, `[ ]`, `\\{ \\}` at one brace depth that enclose a `\\frac`."""
    pairs, stack, depth = [], [], 0
    for i, tok in enumerate(tokens):
        depth += {"{": 1, "}": -1}.get(tok, 0)
        if tok in _OPENING and not (tok == "[" and i > 0 and tokens[i - 1] == ROOT):
            stack.append((i, depth, _OPENING[tok]))
        elif stack and tok == stack[-1][2] and depth == stack[-1][1]:
            start = stack.pop()[0]
            if FRACTION_BAR in tokens[start + 1 : i]:
                pairs.append((start, i))
    return pairs


def layout_formula(
    tokens: Sequence[str], *, display_fractions: bool = True, tall_delimiters: bool = True
) -> list[SymbolBox] | LayoutFailure:
    """Lay `tokens` (project token scheme) out with mathtext; the boxes of every drawn symbol."""
    source = mathtext_source(tokens, display_fractions=display_fractions, tall_delimiters=tall_delimiters)
    parsed = _parse(source)
    if isinstance(parsed, LayoutFailure):
        return parsed
    glyphs, rects = parsed
    boxes: list[SymbolBox] = []
    used: set[int] = set()
    functions = [t for t in set(tokens) if _token_glyph(t) is None and _spelling(t)]
    boxes += _function_boxes(glyphs, functions, used)
    roots, rules = _root_boxes(glyphs, rects, used)
    boxes += roots
    chars = _char_tokens(tuple(sorted(set(tokens))))
    for k, (char, _, size, box) in enumerate(glyphs):
        if k not in used:
            token = chars.get(char, f"U+{ord(char):04X}")
            boxes.append(SymbolBox(token, "glyph", *(float(v) for v in box), size))
    boxes += [_rule_box(rule) for rule in rules]
    expected, got = drawable_tokens(tokens), Counter(b.token for b in boxes)
    if expected != got:
        missing, extra = expected - got, got - expected
        return LayoutFailure(
            "layout_mismatch", f"not drawn: {dict(missing)}; drawn but not in the formula: {dict(extra)}"
        )
    return sorted(boxes, key=lambda b: (b.x0, b.y0))


def tighten_fractions(boxes: Sequence[SymbolBox], keep: float) -> list[SymbolBox]:
    """Move each fraction's numerator down and denominator up so only `keep` (0..1) of the typeset gap
    to the bar is left (hand-written fractions are compact); inner fractions first, groups move rigidly."""
    out = list(boxes)
    for i in sorted((k for k, b in enumerate(out) if b.kind == "bar"), key=lambda k: out[k].width):
        bar = out[i]
        mid = 0.5 * (bar.y0 + bar.y1)
        spanned = [
            k
            for k, b in enumerate(out)
            if k != i
            and bar.x0 < 0.5 * (b.x0 + b.x1) < bar.x1
            and (b.kind not in ("bar", "root") or b.width <= bar.width)
        ]
        above = [k for k in spanned if 0.5 * (out[k].y0 + out[k].y1) < mid]
        below = [k for k in spanned if 0.5 * (out[k].y0 + out[k].y1) >= mid]
        if above:
            gap = max(bar.y0 - max(out[k].y1 for k in above), 0.0)
            for k in above:
                out[k] = _shift(out[k], gap * (1 - keep))
        if below:
            gap = max(min(out[k].y0 for k in below) - bar.y1, 0.0)
            for k in below:
                out[k] = _shift(out[k], -gap * (1 - keep))
    return out


def _shift(box: SymbolBox, dy: float) -> SymbolBox:
    return replace(box, y0=box.y0 + dy, y1=box.y1 + dy)


# --------------------------------------------------------------------------------------------- mathtext
@lru_cache(maxsize=1)
def _parser():
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("path")


@lru_cache(maxsize=1)
def _font_properties():
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=FONT_SIZE, math_fontfamily=_FONTSET)


Glyph = tuple[str, bool, float, tuple[float, float, float, float]]  # char, upright, size, (x0, y0, x1, y1)
Rect = tuple[float, float, float, float]  # x, y (up, bottom edge), w, h


def _parse(source: str) -> tuple[list[Glyph], list[Rect]] | LayoutFailure:
    """mathtext's glyph and rule lists, with each glyph's ink box (pt, y down)."""
    if not source.strip() or len(source) > _MAX_CHARS or "$" in source:
        return LayoutFailure("mathtext_unsupported", "empty, too long, or holds a $")
    try:
        parsed = _parser().parse(f"${source}$", dpi=72, prop=_font_properties())
    except ValueError as exc:  # mathtext reports unsupported constructs as ValueError
        lines = str(exc).strip().splitlines()
        return LayoutFailure("mathtext_unsupported", (lines[-1] if lines else "parse error")[:300])
    glyphs = []
    for font, size, num, glyph_index, ox, oy in parsed.glyphs:
        xmin, ymin, xmax, ymax = _ink_box(font, float(size), int(glyph_index))
        upright = "italic" not in font.postscript_name.lower()
        box = (float(ox + xmin), float(-(oy + ymax)), float(ox + xmax), float(-(oy + ymin)))
        glyphs.append((chr(num), upright, float(size), box))
    rects = [tuple(float(v) for v in r) for r in parsed.rects]
    return glyphs, rects


_INK_BOXES: dict[tuple[str, int], tuple[float, float, float, float]] = {}


def _ink_box(font, size: float, glyph_index: int) -> tuple[float, float, float, float]:
    """A glyph's ink box relative to its origin (pt, y up) at `size` pt: unhinted outlines scale linearly,
    so each glyph is measured once at 100 pt."""
    key = (font.fname, glyph_index)
    if key not in _INK_BOXES:
        from matplotlib.ft2font import LoadFlags

        font.set_size(100.0, 72)
        glyph = font.load_glyph(glyph_index, flags=LoadFlags.NO_HINTING)
        _INK_BOXES[key] = tuple(v / 64.0 / 100.0 for v in glyph.bbox)
    xmin, ymin, xmax, ymax = _INK_BOXES[key]
    return xmin * size, ymin * size, xmax * size, ymax * size


@lru_cache(maxsize=512)
def _token_glyph(token: str) -> str | None:
    """The one character mathtext draws for `token` alone (None when it draws several or none)."""
    if token in _STRUCTURE or token in (FRACTION_BAR, ROOT, "[", "]"):
        return {"[": "[", "]": "]"}.get(token)
    try:
        parsed = _parse(_latex(token))
    except LabelError:
        return None
    if isinstance(parsed, LayoutFailure) or parsed[1] or len(parsed[0]) != 1:
        return None
    return parsed[0][0][0]


@lru_cache(maxsize=512)
def _spelling(token: str) -> str:
    """The upright letters mathtext sets for a function name (`\\sin` -> `sin`), else ""."""
    if not token.startswith("\\") or token in (FRACTION_BAR, ROOT):
        return ""
    parsed = _parse(_latex(token))
    if isinstance(parsed, LayoutFailure) or parsed[1] or len(parsed[0]) < 2:
        return ""
    if not all(upright and char.isascii() and char.isalpha() for char, upright, _, _ in parsed[0]):
        return ""
    return "".join(char for char, _, _, _ in parsed[0])


@lru_cache(maxsize=4096)
def _char_tokens(tokens: tuple[str, ...]) -> dict[str, str]:
    """character -> token for the single-glyph tokens among `tokens`."""
    out = {}
    for token in tokens:
        char = _token_glyph(token)
        if char is not None:
            out[char] = token
    return out


def _function_boxes(glyphs: list[Glyph], functions: list[str], used: set[int]) -> list[SymbolBox]:
    """One box per function name: a run of upright letters on one baseline spelling it."""
    boxes = []
    for token in sorted(functions, key=lambda t: -len(_spelling(t))):  # `\sinh` before `\sin`
        name = _spelling(token)
        k = 0
        while k + len(name) <= len(glyphs):
            run = range(k, k + len(name))
            if all(
                j not in used
                and glyphs[j][1]
                and glyphs[j][0] == name[n]
                and abs(glyphs[j][2] - glyphs[k][2]) < 1e-6
                and (n == 0 or glyphs[j][3][0] >= glyphs[j - 1][3][0])
                for n, j in enumerate(run)
            ):
                used.update(run)
                x0 = min(glyphs[j][3][0] for j in run)
                y0 = min(glyphs[j][3][1] for j in run)
                x1 = max(glyphs[j][3][2] for j in run)
                y1 = max(glyphs[j][3][3] for j in run)
                boxes.append(SymbolBox(token, "function", x0, y0, x1, y1, glyphs[k][2]))
                k += len(name)
            else:
                k += 1
    return boxes


def _rule_box(rect: Rect) -> SymbolBox:
    """A rule mathtext draws on its own is a fraction bar."""
    x, y, w, h = rect
    return SymbolBox(FRACTION_BAR, "bar", x, -(y + h), x + w, -y, FONT_SIZE * h / _RULE_AT_10PT)


def _root_boxes(glyphs: list[Glyph], rects: list[Rect], used: set[int]) -> tuple[list[SymbolBox], list[Rect]]:
    """A radical sign and the rule on top of it are one handwritten `\\sqrt` (the rule starts where the
    sign ends, at the height of its top); returns the roots and the rules left over."""
    boxes = []
    free = list(rects)
    for k, (char, _, size, (x0, y0, x1, y1)) in enumerate(glyphs):
        if char != "\u221a":
            continue
        near = [r for r in free if abs(r[0] - x1) < 0.25 * size and abs(-(r[1] + r[3]) - y0) < 0.25 * size]
        if not near:
            continue
        rect = min(near, key=lambda r: abs(r[0] - x1) + abs(-(r[1] + r[3]) - y0))
        free.remove(rect)
        used.add(k)
        top = min(y0, -(rect[1] + rect[3]))
        boxes.append(SymbolBox(ROOT, "root", x0, top, rect[0] + rect[2], y1, size, inner_x0=rect[0]))
    return boxes, free
