"""Rasterise online handwriting (pen traces) into an offline image: ink bright on dark, uint8 (H, W).

InkML files use very different units (CROHME has files in 0.01 mm, in screen pixels and in
centimetres), so coordinates are first normalised. The default normalisation reproduces the
offline CROHME bitmaps (CoMER/WAP `data.zip`): on those, the mean height of the pen strokes,
ignoring flat ones (minus signs, dots), is ~28 px for every expression, the ink is ~2 px wide and
a 12 px margin surrounds it. `benchmarks/inkml_caption_agreement.py --render` measures the match.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from texscribe.errors import ImageError

_SHIFT = 4  # cv2 fixed-point bits: points are drawn with 1/16 px precision
MAX_COORDINATE = 1e9  # |x|, |y| beyond this is no digitiser's unit (the largest in CROHME: 26,406)
MAX_SPREAD = 1000.0  # ink extent in reference stroke heights (the widest CROHME expression: 77)


@dataclass(frozen=True)
class RenderOptions:
    """How traces become pixels. Precedence of the size rules: `scale`, then `target_height`, then `stroke_height`.

    scale: pixels per InkML unit (use when all files share one unit and absolute size matters).
    target_height: height of the ink in px; every expression gets the same height.
    stroke_height: mean height in px of the non-flat strokes (default, matches CROHME offline bitmaps).
    line_width: the pen's line thickness in px (rounded); anti-aliased, a thickness t >= 2 draws a stroke
        2 * ceil(t / 2) + 1.4 px wide (2: 3.4 px, the CROHME bitmap look). padding: background margin in px.
    jitter: strength of a random affine + smooth elastic perturbation of the points (0 = none,
        1 = rotation up to 4 deg, shear 0.15, scale 10 %, displacement up to 8 % of `stroke_height`).
    seed: with a seed, each sample's jitter is reproducible (seeded by seed + sample id).
    max_side: the longer side is capped at this many px (pathological coordinates cannot eat memory).
    """

    scale: float | None = None
    target_height: int | None = None
    stroke_height: float = 28.0
    line_width: float = 2.0
    padding: int = 12
    antialias: bool = True
    jitter: float = 0.0
    seed: int | None = None
    max_side: int = 4096

    def __post_init__(self) -> None:
        for name in ("scale", "target_height"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"RenderOptions.{name} must be > 0 or None, got {value!r}")
        if not (self.stroke_height > 0 and self.line_width > 0 and self.max_side > 0):
            raise ValueError("RenderOptions.stroke_height, line_width and max_side must be > 0")
        if self.padding < 0 or self.jitter < 0:
            raise ValueError("RenderOptions.padding and jitter must be >= 0")

    def rng_for(self, sample_id: str) -> np.random.Generator:
        """The random generator for one sample: reproducible when `seed` is set, fresh otherwise."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, zlib.crc32(sample_id.encode("utf-8"))])


def render_strokes(
    traces: Sequence[np.ndarray],
    options: RenderOptions | None = None,
    rng: np.random.Generator | None = None,
    origin: str | None = None,
) -> np.ndarray:
    """Draw traces (each (N, 2) float x, y; y grows downwards) as uint8 (H, W), ink 255 on background 0.

    Raises `ImageError` (naming `origin`) when there is no point to draw, or a coordinate is not finite
    or beyond `MAX_COORDINATE` (it would squeeze the rest of the ink into a dot).
    """
    opts = options or RenderOptions()
    strokes = [_points(t) for t in traces]
    problem = drawing_problem(strokes)
    if problem:
        raise ImageError(problem, source=origin)
    strokes = [t for t in strokes if len(t)]
    if not strokes:
        raise ImageError("no trace points to draw", source=origin)
    scale = _scale(strokes, opts)
    low = np.min([t.min(axis=0) for t in strokes], axis=0)
    strokes = [(t - low) * scale for t in strokes]
    if opts.jitter > 0:
        strokes = _jitter(strokes, opts, rng if rng is not None else np.random.default_rng())
        low = np.min([t.min(axis=0) for t in strokes], axis=0)
        strokes = [t - low for t in strokes]
    extent = np.max([t.max(axis=0) for t in strokes], axis=0)  # (w, h) of the point cloud in px
    room = opts.max_side - 2 * opts.padding - opts.line_width
    if extent.max() > room > 0:
        strokes = [t * (room / extent.max()) for t in strokes]
        extent = extent * (room / extent.max())
    offset = opts.padding + opts.line_width / 2
    width = int(math.ceil(extent[0] + 2 * offset))
    height = int(math.ceil(extent[1] + 2 * offset))
    canvas = np.zeros((height, width), dtype=np.uint8)
    thickness = max(1, int(round(opts.line_width)))
    line_type = cv2.LINE_AA if opts.antialias else cv2.LINE_8
    fixed = [np.round((t + offset) * (1 << _SHIFT)).astype(np.int32) for t in strokes]
    taps = [bool((p == p[0]).all()) for p in fixed]  # one distinct point: a tap of the pen, drawn as a dot
    lines = [p.reshape(-1, 1, 2) for p, tap in zip(fixed, taps) if not tap]
    if lines:
        cv2.polylines(
            canvas, lines, isClosed=False, color=255, thickness=thickness, lineType=line_type, shift=_SHIFT
        )
    radius = max(1, int(round(opts.line_width / 2 * (1 << _SHIFT))))
    for p, tap in zip(fixed, taps):
        if tap:
            cv2.circle(canvas, (int(p[0, 0]), int(p[0, 1])), radius, 255, -1, line_type, _SHIFT)
    return canvas


@dataclass(frozen=True, eq=False)  # arrays: compare traces with np.array_equal
class Ink:
    """Online handwriting as an input to recognition: pen traces, each (N, 2) x, y points in any unit, y
    downwards (a canvas in pixels, a tablet, an InkML file).

    Why: a drawing's size and pen are the writer's accident (a formula drawn small on a canvas with a 5 px
    pen merges its symbols into blobs). The traces carry the writing itself, so `render_ink` draws them at
    the CROHME bitmap look (28 px strokes, a 3.4 px pen) whatever size they were drawn at: the canvas reads
    like the file path.
    """

    traces: tuple[np.ndarray, ...]


def render_ink(ink: Ink, origin: str | None = None) -> np.ndarray:
    """`ink` drawn with the default `RenderOptions` (the CROHME bitmap look): uint8 (H, W), ink 255 on 0.

    Raises `ImageError` (naming `origin`) for ink that shows no written expression (`ink_problem`: no point,
    a single dot, a coordinate that is not finite, stray points far from the rest)."""
    problem = ink_problem(ink.traces)
    if problem:
        raise ImageError(problem, source=origin)
    return render_strokes(ink.traces, RenderOptions(), origin=origin)


def stroke_scale(traces: Sequence[np.ndarray], options: RenderOptions | None = None) -> float:
    """Pixels per InkML unit that `render_strokes(traces, options)` draws at: drawing a subset of the traces
    with `RenderOptions(scale=...)` of this value keeps its symbols the size they have in the whole drawing.
    Raises `ImageError` as `render_strokes` does."""
    strokes = [_points(t) for t in traces]
    problem = drawing_problem(strokes)
    if problem:
        raise ImageError(problem)
    strokes = [t for t in strokes if len(t)]
    if not strokes:
        raise ImageError("no trace points to draw")
    return _scale(strokes, options or RenderOptions())


def drawing_problem(traces: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> str | None:
    """Why traces ((N, 2) x, y arrays) cannot be drawn faithfully, or None: a coordinate that is not
    finite or is beyond `MAX_COORDINATE`. `ids` name the traces in the message (default: 0, 1, ...)."""
    for n, trace in enumerate(traces):
        points = _points(trace)
        name = ids[n] if ids is not None else str(n)
        if not np.isfinite(points).all():
            return f"trace {name!r}: coordinate {points[~np.isfinite(points)][0]} is not finite"
        if len(points) and np.abs(points).max() > MAX_COORDINATE:
            return f"trace {name!r}: coordinate {np.abs(points).max():.3g} beyond +-{MAX_COORDINATE:.0e}"
    return None


def ink_problem(traces: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> str | None:
    """Why traces cannot show a written expression, or None: `drawing_problem`, no point at all, all
    points at one place (a single dot), or points so far apart that the ink spans more than `MAX_SPREAD`
    stroke heights (stray points: the drawing would shrink the expression to specks)."""
    problem = drawing_problem(traces, ids)
    if problem:
        return problem
    strokes = [p for p in (_points(t) for t in traces) if len(p)]
    if not strokes:
        return "no trace points"
    points = np.concatenate(strokes)
    if (points == points[0]).all():
        return f"all {len(points)} point(s) at one place: a dot, not a written expression"
    spread = np.ptp(points, axis=0).max() / _reference_height(strokes)
    if spread > MAX_SPREAD:
        return f"the ink spans {spread:.3g} stroke heights (more than {MAX_SPREAD:.0f}): stray points"
    return None


def _points(trace: np.ndarray) -> np.ndarray:
    t = np.asarray(trace, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] < 2:
        raise ImageError(f"a trace must be an (N, 2) array of x, y points, got shape {t.shape}")
    return t[:, :2]


def _reference_height(strokes: list[np.ndarray]) -> float:
    """Mean height of the strokes that are not flat (minus signs, dots); the whole ink's larger side when
    all are flat. 0 only for a single point."""
    heights = np.array([np.ptp(t[:, 1]) for t in strokes])
    mean = heights.mean()
    reference = heights[heights >= 0.25 * mean].mean() if mean > 0 else 0.0
    return float(reference) if reference > 0 else float(np.ptp(np.concatenate(strokes), axis=0).max())


def _scale(strokes: list[np.ndarray], opts: RenderOptions) -> float:
    """Pixels per unit under the size rule in `opts` (see `RenderOptions`)."""
    if opts.scale is not None:
        return float(opts.scale)
    points = np.concatenate(strokes)
    span = np.ptp(points, axis=0)  # (w, h)
    if opts.target_height is not None:
        ink = max(opts.target_height - opts.line_width, 1.0)
        return ink / span[1] if span[1] > 0 else ink / max(span[0], 1e-9) if span[0] > 0 else 1.0
    reference = _reference_height(strokes)  # only flat strokes (a minus sign): the whole expression
    return opts.stroke_height / reference if reference > 0 else 1.0


def _jitter(strokes: list[np.ndarray], opts: RenderOptions, rng: np.random.Generator) -> list[np.ndarray]:
    """Random affine (rotation, shear, anisotropic scale) and a smooth sinusoidal displacement field, in px."""
    j = opts.jitter
    angle = math.radians(rng.uniform(-4, 4) * j)
    shear = rng.uniform(-0.15, 0.15) * j
    sx, sy = np.exp(rng.uniform(-0.1, 0.1, size=2) * j)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    affine = rot @ np.array([[sx, shear], [0.0, sy]])
    amplitude = 0.08 * opts.stroke_height * j
    waves = []
    for _ in range(3):  # wavelengths of 2-5 stroke heights keep each stroke smooth
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-12
        freq = direction / (opts.stroke_height * rng.uniform(2, 5))
        waves.append((freq, rng.uniform(0, 2 * np.pi), rng.normal(size=2)))
    out = []
    for t in strokes:
        moved = t @ affine.T
        shift = np.zeros_like(moved)
        for freq, phase, axis in waves:
            shift += np.sin(2 * np.pi * (moved @ freq) + phase)[:, None] * axis
        out.append(moved + shift * (amplitude / math.sqrt(len(waves))))
    return out
