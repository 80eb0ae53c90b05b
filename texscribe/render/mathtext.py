"""Fallback renderer for machines without TeX: matplotlib's mathtext (a subset of LaTeX math).

Only formulas mathtext parses are rendered; the rest fail with `mathtext_unsupported` (environments such
as `matrix`, `\\boxed`, many AMS commands), so an image never shows something other than its label.
Output matches the TeX renderer: uint8 (H, W) "paper" image, ink dark on white, cropped to the ink box.
mathtext has one math style (it ignores the TeX renderer's display/text choice).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from texscribe.images import DEFAULT_MAX_PIXELS
from texscribe.render.style import RenderFailure, RenderStyle

# Our font families -> mathtext's math font sets (Latin Modern looks like Computer Modern).
MATHTEXT_FONTS = {"cm": "cm", "lm": "cm", "times": "stix", "palatino": "dejavuserif", "sans": "stixsans"}
_MAX_CHARS = 2000  # mathtext's parser is slow on very long inputs; such formulas are not worth it here


@lru_cache(maxsize=1)
def _parser():
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("agg")


def render_mathtext(
    latex: str, style: RenderStyle, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray | RenderFailure:
    """Render one formula with mathtext at `style.size` points and `style.dpi`; image or failure."""
    from matplotlib.font_manager import FontProperties

    if style.font not in MATHTEXT_FONTS:
        raise ValueError(f"unknown font {style.font!r}; choose from {', '.join(MATHTEXT_FONTS)}")
    if not latex.strip():
        return RenderFailure("empty_output", "empty formula")
    if len(latex) > _MAX_CHARS or "$" in latex:
        return RenderFailure("mathtext_unsupported", "formula too long or holds a $ for mathtext")
    prop = FontProperties(size=style.size, math_fontfamily=MATHTEXT_FONTS[style.font])
    try:
        parsed = _parser().parse(f"${latex}$", dpi=style.dpi, prop=prop)
    except ValueError as exc:  # mathtext reports every unsupported construct as a ValueError
        first = str(exc).strip().splitlines()
        return RenderFailure("mathtext_unsupported", (first[-1] if first else "parse error")[:300])
    except Exception as exc:  # font or layout failures inside matplotlib, not the formula's syntax
        return RenderFailure("renderer_error", f"mathtext: {type(exc).__name__}: {exc}"[:300])
    coverage = np.asarray(parsed.image, dtype=np.uint8)
    if coverage.size > max_pixels:
        return RenderFailure(
            "image_too_large", f"{coverage.shape[1]}x{coverage.shape[0]} px > {max_pixels:,}"
        )
    if coverage.size == 0 or int(coverage.max()) < 128:
        return RenderFailure("empty_output", "mathtext drew nothing")
    paper = 255 - coverage  # mathtext gives ink coverage (255 = ink): turn it into dark ink on white
    rows = np.flatnonzero((paper < 255).any(axis=1))
    cols = np.flatnonzero((paper < 255).any(axis=0))
    return np.ascontiguousarray(paper[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
