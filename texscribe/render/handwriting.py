"""Synthetic handwriting: a formula laid out by mathtext, each symbol drawn with a real CROHME writer's glyph.

`render_handwriting(tokens, bank, rng)` lays the formula out (`handwriting_layout`), draws a `HandStyle`
(one writer preferred for the whole formula, spacing, slant, baseline drift, size and position jitter),
places a bank glyph of each symbol in its box (`compose`), and rasterises all pen strokes with
`texscribe.data.render_strokes` the way the CROHME offline bitmaps look: the mean height of the pen
strokes normalised to ~28 px, binary white ink ~3.7 px wide on black, cropped to the ink with a 4 px
margin (uint8 (H, W)). Fraction bars are a writer's minus sign stretched over the numerator and
denominator as drawn, slightly bowed; roots are a bank `\\sqrt` whose sign keeps its shape and whose
overbar stretches over the radicand as drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from texscribe.data.render_strokes import RenderOptions, render_strokes
from texscribe.images import crop_to_ink
from texscribe.render.glyph_bank import GlyphBank
from texscribe.render.handwriting_layout import (
    FRACTION_BAR,
    LayoutFailure,
    SymbolBox,
    drawable_tokens,
    layout_formula,
    tighten_fractions,
)

LETTER_HEIGHT = 0.6  # a writer's median letter/digit height in em: one bank unit at type size 1
BAR_GLYPH = "-"  # fraction bars are drawn with minus signs
MARGIN = 4  # px of background around the ink, as `texscribe data prepare` crops
WRITER_CANDIDATES = 8
# Thresholds of the antialiased render that give CROHME's binary strokes ~3.5-4 px wide (measured: 190
# matches the mean stroke width of the train bitmaps, 3.70 px; 150 gives 4.0, 210 gives 3.55).
THRESHOLDS = (150, 215)


@dataclass(frozen=True)
class HandStyle:
    """How one formula is written. Lengths are relative to the type size of each symbol (em)."""

    writer: int  # preferred bank writer (used for every symbol that writer wrote)
    spacing: float  # horizontal spread of the symbols' centres (1 = as typeset)
    scale: float  # glyph size relative to its typeset box
    size_jitter: float  # per-glyph sd of the log size
    offset_jitter: float  # per-glyph sd of the position, em
    slant: float  # shear of the whole formula (x += slant * height above the baseline)
    rotation: float  # radians
    drift: tuple[float, float, float]  # baseline drift: amplitude (em), wavelength (em), phase
    tilt: float  # baseline slope
    fraction_gap: float  # share of the typeset gap between a fraction's bar and its parts that is kept
    display_fractions: bool
    tall_delimiters: bool
    threshold: int  # binarisation threshold of the antialiased render (stroke width)


def draw_style(bank: GlyphBank, tokens: Sequence[str], rng: np.random.Generator) -> HandStyle:
    """A random writing style for `tokens`; the writer covers as many of its symbols as a few tries find."""
    return HandStyle(
        writer=choose_writer(bank, tokens, rng),
        spacing=float(np.clip(np.exp(rng.normal(np.log(1.12), 0.12)), 0.95, 1.6)),
        scale=float(np.exp(rng.normal(0.0, 0.08))),
        size_jitter=float(rng.uniform(0.03, 0.12)),
        offset_jitter=float(rng.uniform(0.01, 0.05)),
        slant=float(np.clip(rng.normal(0.0, 0.08), -0.2, 0.2)),
        rotation=float(np.radians(np.clip(rng.normal(0.0, 1.0), -3.0, 3.0))),
        drift=(
            float(rng.uniform(0.0, 0.08)),
            float(rng.uniform(6.0, 20.0)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
        tilt=float(np.clip(rng.normal(0.0, 0.015), -0.04, 0.04)),
        fraction_gap=float(rng.uniform(0.3, 0.9)),
        display_fractions=bool(rng.random() < 0.8),
        tall_delimiters=bool(rng.random() < 0.7),
        threshold=int(rng.integers(THRESHOLDS[0], THRESHOLDS[1] + 1)),
    )


def choose_writer(bank: GlyphBank, tokens: Sequence[str], rng: np.random.Generator) -> int:
    """A writer of one of the formula's symbols, the best of a few random picks by how many distinct
    symbols of the formula they wrote (so most symbols come from one hand)."""
    wanted = sorted(t for t in {_bank_token(t) for t in drawable_tokens(tokens)} if bank.has(t))
    if not wanted:
        return int(rng.integers(len(bank.writers)))
    best, best_cover = -1, -1
    for _ in range(WRITER_CANDIDATES):
        token = wanted[int(rng.integers(len(wanted)))]
        writers = bank.writers_of(token)
        writer = int(writers[int(rng.integers(len(writers)))])
        cover = sum(1 for t in wanted if len(bank.glyphs_of(t, writer)))
        if cover > best_cover:
            best, best_cover = writer, cover
    return best


def missing_symbols(tokens: Sequence[str], bank: GlyphBank) -> list[str]:
    """The drawn symbols of `tokens` that have no glyph in `bank` (sorted; empty when all can be drawn)."""
    return sorted(t for t in drawable_tokens(tokens) if not bank.has(_bank_token(t)))


def _bank_token(token: str) -> str:
    return BAR_GLYPH if token == FRACTION_BAR else token


def render_handwriting(
    tokens: Sequence[str], bank: GlyphBank, rng: np.random.Generator
) -> np.ndarray | LayoutFailure:
    """One handwritten image of `tokens`: uint8 (H, W), white ink (255) on black, cropped to the ink."""
    style = draw_style(bank, tokens, rng)
    boxes = layout_formula(
        tokens, display_fractions=style.display_fractions, tall_delimiters=style.tall_delimiters
    )
    if isinstance(boxes, LayoutFailure):
        return boxes
    strokes = compose(tighten_fractions(boxes, style.fraction_gap), bank, style, rng)
    return rasterize(strokes, style.threshold)


def rasterize(strokes: list[np.ndarray], threshold: int) -> np.ndarray:
    """Pen strokes (any unit, y down) -> binary uint8 image in the CROHME bitmap look, cropped to the ink."""
    soft = render_strokes(strokes, RenderOptions(padding=MARGIN))
    ink = (soft >= threshold).astype(np.float32)
    if not ink.any():  # a threshold above every pixel of a faint render: keep the soft ink
        ink = (soft > 0).astype(np.float32)
    return (crop_to_ink(ink, margin=MARGIN) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- compose
@dataclass
class _Placed:
    """A symbol drawn: its typeset box and its pen strokes (pt, y down)."""

    box: SymbolBox
    strokes: list[np.ndarray]

    def extent(self) -> np.ndarray:
        points = np.concatenate(self.strokes)
        return np.concatenate([points.min(axis=0), points.max(axis=0)])  # x0, y0, x1, y1


def compose(
    boxes: Sequence[SymbolBox], bank: GlyphBank, style: HandStyle, rng: np.random.Generator
) -> list[np.ndarray]:
    """Pen strokes (pt, y down) of a bank glyph placed in every box, with the style's jitter.

    Symbols first (pushed apart where a wide glyph runs into its neighbour); then fraction bars and roots, narrowest first, each sized to the handwritten symbols
    it spans (a bar runs under its whole numerator and over its denominator, in the gap between them;
    a root's overbar covers its whole radicand), so they fit the glyphs actually drawn."""
    placed: list[_Placed] = []
    for box in (b for b in boxes if b.kind in ("glyph", "function")):
        glyph = _pick(bank, box.token, style.writer, rng)
        cx, cy = _centre(box, style, rng)
        placed.append(
            _Placed(box, _fit(bank.strokes(glyph), bank.glyph_size[glyph], box, style, cx, cy, rng))
        )
    _separate(placed, rng)
    for box in sorted((b for b in boxes if b.kind in ("bar", "root")), key=lambda b: b.width):
        glyph = _pick(bank, _bank_token(box.token), style.writer, rng, flat=box.kind == "bar")
        inside = [p for p in placed if _spans(box, p.box)]
        if box.kind == "bar":
            strokes = _bar(bank.strokes(glyph), box, inside, style, rng)
        else:
            strokes = _root(bank.strokes(glyph), bank.glyph_size[glyph], box, inside, style, rng)
            _move_index(placed, box, float(np.concatenate(strokes)[:, 0].min()) - box.x0 * style.spacing)
        placed.append(_Placed(box, strokes))
    return _slant_and_rotate([s for p in placed for s in p.strokes], style)


def _separate(placed: list[_Placed], rng: np.random.Generator) -> None:
    """Where a glyph's ink runs into the next glyph of its row (same type size, overlapping typeset
    boxes), shift that glyph and everything right of it so a small gap (or a slight touch) is left."""
    order = sorted(placed, key=lambda p: 0.5 * (p.box.x0 + p.box.x1))
    for j, item in enumerate(order):
        box = item.box
        row = [p for p in order[:j] if p.box.size == box.size and _same_row(p.box, box)]
        if not row:
            continue
        overlap = row[-1].extent()[2] - item.extent()[0] + rng.uniform(-0.05, 0.12) * box.size
        if overlap <= 0:
            continue
        for p in order[j:]:
            p.strokes = [s + (overlap, 0.0) for s in p.strokes]


def _move_index(placed: list[_Placed], root: SymbolBox, dx: float) -> None:
    """A root's index (`3` of a cube root) follows its sign, which is placed by the radicand as drawn."""
    for p in placed:
        cx, cy = 0.5 * (p.box.x0 + p.box.x1), 0.5 * (p.box.y0 + p.box.y1)
        inner = root.inner_x0 if root.inner_x0 is not None else root.x1
        if root.x0 <= cx < inner and cy < 0.5 * (root.y0 + root.y1) and p.box.size < root.size:
            p.strokes = [s + (dx, 0.0) for s in p.strokes]


def _same_row(a: SymbolBox, b: SymbolBox) -> bool:
    shared = min(a.y1, b.y1) - max(a.y0, b.y0)
    return shared > 0.5 * min(a.height, b.height) and a.x0 < b.x0


def _pick(bank: GlyphBank, token: str, writer: int, rng: np.random.Generator, flat: bool = False) -> int:
    """A random glyph of `token`, by `writer` when they wrote one; `flat`: only glyphs at most a quarter
    as tall as wide (minus signs fit to be fraction bars)."""
    for pool in (bank.glyphs_of(token, writer), bank.glyphs_of(token)):
        if flat:
            size = bank.glyph_size[pool]
            pool = pool[size[:, 1] <= 0.25 * size[:, 0]]
        if len(pool):
            return int(pool[int(rng.integers(len(pool)))])
    raise KeyError(f"no handwritten glyph of {token!r} in the bank")


def _spans(outer: SymbolBox, inner: SymbolBox) -> bool:
    """Whether a bar lies over/under `inner`, or a root's radicand holds it."""
    cx, cy = 0.5 * (inner.x0 + inner.x1), 0.5 * (inner.y0 + inner.y1)
    if outer.kind == "bar":
        return outer.x0 < cx < outer.x1
    start = outer.inner_x0 if outer.inner_x0 is not None else outer.x0
    return start < cx < outer.x1 and outer.y0 < cy < outer.y1


def _centre(box: SymbolBox, style: HandStyle, rng: np.random.Generator) -> tuple[float, float]:
    """Where the glyph's centre goes: the box centre spread by `spacing`, on a drifting baseline."""
    jitter = rng.normal(0.0, style.offset_jitter * box.size, size=2)
    cx = 0.5 * (box.x0 + box.x1) * style.spacing + jitter[0]
    return cx, 0.5 * (box.y0 + box.y1) + _drift(cx, style) + jitter[1]


def _drift(x: float, style: HandStyle) -> float:
    """The baseline's offset at x (pt): a slow wave plus a slope."""
    amplitude, wavelength, phase = style.drift
    return amplitude * 10.0 * math.sin(2 * math.pi * x / (wavelength * 10.0) + phase) + style.tilt * x


def _fit(
    strokes: list[np.ndarray],
    size: np.ndarray,
    box: SymbolBox,
    style: HandStyle,
    cx: float,
    cy: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Scale a glyph into its box keeping most of the writer's aspect, and centre it at (cx, cy)."""
    sx, sy = fit_scale(size, box)
    vary = style.scale * math.exp(rng.normal(0.0, style.size_jitter))
    scale = np.array([sx, sy]) * vary
    return [(s - size / 2) * scale + (cx, cy) for s in strokes]


def fit_scale(size: np.ndarray, box: SymbolBox) -> tuple[float, float]:
    """(sx, sy) that fit a glyph of `size` (w, h, bank units) into `box`: dots by the writer's own size
    (one bank unit = the type's letter height), flat boxes or glyphs (a minus, `=`) by width, thin ones
    (`1`, `(`) by height, others by the mean of both with at most ~18 % stretch either way; never more
    than 1.6 times the box's longer side."""
    gw, gh = float(size[0]), float(size[1])
    bw, bh = max(box.width, 0.02 * box.size), max(box.height, 0.02 * box.size)
    longest = max(gw, gh, 1e-6)
    cap = 1.6 * max(bw, bh) / longest
    if max(bw, bh) < 0.25 * box.size or longest < 0.2:  # dots, primes, commas
        s = min(LETTER_HEIGHT * box.size, cap)
        return s, s
    if bh < 0.3 * bw or gh < 0.3 * gw:
        s = min(bw / max(gw, 1e-6), cap)
        return s, s
    if bw < 0.3 * bh or gw < 0.3 * gh:
        s = min(bh / gh, cap)
        return s, s
    ax, ay = bw / gw, bh / gh
    mean = min(math.sqrt(ax * ay), cap)
    stretch = float(np.clip(math.sqrt(ax / ay), 1 / 1.18, 1.18))
    return mean * stretch, mean / stretch


def _bar(
    strokes: list[np.ndarray],
    box: SymbolBox,
    inside: list[_Placed],
    style: HandStyle,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """A fraction bar: a minus sign stretched over the numerator and denominator as drawn, in the gap
    between them, its wobble kept at the writer's size, slightly bowed and tilted."""
    cx, cy = _centre(box, style, rng)
    left, right = cx - box.width * style.spacing / 2, cx + box.width * style.spacing / 2
    if inside:
        ext = np.array([p.extent() for p in inside])
        left, right = min(left, float(ext[:, 0].min())), max(right, float(ext[:, 2].max()))
        mid = 0.5 * (box.y0 + box.y1)
        above = [e for p, e in zip(inside, ext) if 0.5 * (p.box.y0 + p.box.y1) < mid]
        below = [e for p, e in zip(inside, ext) if 0.5 * (p.box.y0 + p.box.y1) >= mid]
        if above and below:
            cy = 0.5 * (max(e[3] for e in above) + min(e[1] for e in below))
    overhang = rng.uniform(-0.05, 0.12, size=2) * box.size  # adjacent fractions keep apart
    left, right = left - overhang[0], right + overhang[1]
    points = np.concatenate(strokes)
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    length = right - left
    # the wobble keeps the writer's size, but is never stretched more than the length (no arcs)
    unit = min(LETTER_HEIGHT * box.size * style.scale, length / max(span[0], 1e-6))
    bow = float(np.clip(rng.normal(0.0, 0.02), -0.04, 0.04)) * length
    tilt = rng.normal(0.0, 0.02)
    out = []
    for s in strokes:
        t = (s[:, 0] - low[0]) / max(span[0], 1e-6)  # 0..1 along the bar
        x = left + t * length
        wobble = (s[:, 1] - low[1] - span[1] / 2) * unit
        y = cy + wobble + bow * 4 * t * (1 - t) + tilt * (t - 0.5) * length
        out.append(np.stack([x, y], axis=1))
    return out


def _root(
    strokes: list[np.ndarray],
    size: np.ndarray,
    box: SymbolBox,
    inside: list[_Placed],
    style: HandStyle,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """A root sign over its radicand as drawn: the sign (left of the glyph's top corner) keeps its shape
    at the root's height and ends where the radicand starts; the overbar stretches over the radicand."""
    cx, cy = _centre(box, style, rng)
    sign = (box.inner_x0 - box.x0) if box.inner_x0 is not None else 0.5 * box.size
    x0, y0 = cx - box.width * style.spacing / 2, cy - box.height / 2
    start, x1, y1 = x0 + sign, cx + box.width * style.spacing / 2, cy + box.height / 2
    if inside:
        ext = np.array([p.extent() for p in inside])
        start = float(ext[:, 0].min()) - rng.uniform(0.0, 0.15) * box.size
        x1 = float(ext[:, 2].max()) + rng.uniform(0.05, 0.3) * box.size
        y0 = float(ext[:, 1].min()) - rng.uniform(0.2, 0.45) * box.size
        y1 = float(ext[:, 3].max()) + rng.uniform(0.0, 0.2) * box.size
    corner, corner_y = root_corner(strokes, size)
    sy = (y1 - y0) / max(size[1], 1e-6)
    sign_width = float(np.clip(corner * sy, 0.4 * sign, 1.6 * sign))  # the writer's sign, at this height
    sx_sign = sign_width / max(corner, 1e-6)
    sx_bar = (x1 - start) / max(size[0] - corner, 1e-6)
    wobble = LETTER_HEIGHT * box.size * 0.5  # the overbar keeps its wobble at letter scale, not root height
    out = []
    for s in strokes:
        on_bar = s[:, 0] > corner
        x = np.where(on_bar, start + (s[:, 0] - corner) * sx_bar, start - sign_width + s[:, 0] * sx_sign)
        y = np.where(on_bar, y0 + corner_y * sy + (s[:, 1] - corner_y) * wobble, y0 + s[:, 1] * sy)
        out.append(np.stack([x, y], axis=1))
    return out


def root_corner(strokes: list[np.ndarray], size: np.ndarray) -> tuple[float, float]:
    """(x, y) in bank units where a root sign's upstroke meets its overbar: right of the sign's lowest
    point (the tip of the V), the leftmost point at the height of the overbar; the top middle when the
    glyph has no clear V."""
    points = np.concatenate(strokes)
    left = points[points[:, 0] <= 0.6 * size[0]]
    if len(left):
        vertex_x = float(left[np.argmax(left[:, 1]), 0])
        right = points[points[:, 0] > vertex_x]
        if len(right):
            top = right[right[:, 1] <= right[:, 1].min() + 0.15 * size[1]]
            x, y = top[np.argmin(top[:, 0])]
            if 0.05 * size[0] < x < 0.8 * size[0]:
                return float(x), float(y)
    return 0.5 * float(size[0]), 0.0


def _slant_and_rotate(strokes: list[np.ndarray], style: HandStyle) -> list[np.ndarray]:
    """The whole formula leans (shear about the baseline) and turns slightly."""
    c, s = math.cos(style.rotation), math.sin(style.rotation)
    matrix = np.array([[c, -s], [s, c]]) @ np.array([[1.0, -style.slant], [0.0, 1.0]])
    return [p @ matrix.T for p in strokes]
