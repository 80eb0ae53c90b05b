"""LaTeX -> canonical images: pick a renderer (real TeX, else mathtext), render, degrade, crop.

`render_formulas` is the batch entry point (one TeX run per font); `render_formula` renders one and raises `RenderError`. Results are canonical images
(`texscribe.images`: float32 (H, W) in [0, 1], ink bright on dark) cropped to the ink plus `margin` px.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from texscribe.errors import ImageError, InputError
from texscribe.images import DEFAULT_MAX_PIXELS, crop_to_ink, has_ink, load_image
from texscribe.render.degrade import photo_degrade
from texscribe.render.mathtext import render_mathtext
from texscribe.render.style import FONTS, RenderFailure, RenderStyle
from texscribe.render.tex import TexItem, render_tex_batch, tex_font_status, tex_missing

log = logging.getLogger(__name__)

RENDERERS = ("auto", "tex", "mathtext")
RENDERER_VERSION = "1"  # bump when the pixels a style produces change, so caches re-render
DEFAULT_MARGIN = 4  # px of background kept around the ink, as `texscribe data prepare` does


class RenderError(InputError):
    """A formula could not be rendered; `cause` is a key of `style.FAILURE_CAUSES`."""

    def __init__(self, failure: RenderFailure, latex: str):
        self.cause = failure.cause
        super().__init__(f"cannot render ({failure.cause}): {failure.detail}", source=latex[:80])


def choose_renderer(requested: str = "auto", fonts: Sequence[str] = ("cm",)) -> str:
    """`tex` or `mathtext` for `requested`; `auto` prefers TeX when it and every font in `fonts` are installed.

    Raises `InputError` for an unknown renderer/font, or `tex` requested where it cannot run.
    """
    if requested not in RENDERERS:
        raise InputError(f"unknown renderer {requested!r}; choose from {', '.join(RENDERERS)}")
    unknown = [f for f in fonts if f not in FONTS]
    if unknown:
        raise InputError(f"unknown font {unknown[0]!r}; choose from {', '.join(FONTS)}")
    if requested == "mathtext":
        return "mathtext"
    status = tex_font_status()
    problems = {f: status[f] for f in fonts if status.get(f)}
    if not problems:
        return "tex"
    if requested == "tex":
        font, why = next(iter(problems.items()))
        raise InputError(f"cannot render font {font!r} with TeX: {why}")
    log.warning(
        "TeX rendering unavailable (%s); falling back to matplotlib mathtext, which renders only the "
        "formulas it supports",
        tex_missing() or next(iter(problems.values())),
    )
    return "mathtext"


def render_formulas(
    formulas: Sequence[str],
    styles: Sequence[RenderStyle],
    renderer: str = "auto",
    *,
    margin: int = DEFAULT_MARGIN,
    timeout: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray | RenderFailure]:
    """Render `formulas[i]` in `styles[i]`; a canonical image or a `RenderFailure` for each, in order.

    With TeX, formulas of one font share one `latex` run, so pass many at once.
    """
    if len(formulas) != len(styles):
        raise ValueError(f"{len(formulas)} formulas but {len(styles)} styles")
    if renderer not in ("tex", "mathtext"):
        renderer = choose_renderer(renderer, sorted({s.font for s in styles}))
    papers: list[np.ndarray | RenderFailure | None] = [None] * len(formulas)
    if renderer == "tex":
        groups: dict[str, list[int]] = defaultdict(list)
        for i, style in enumerate(styles):
            groups[style.font].append(i)
        for font, idx in groups.items():
            items = [TexItem(formulas[i], styles[i].size, styles[i].dpi, styles[i].display) for i in idx]
            pages = render_tex_batch(items, font, timeout=timeout, max_pixels=max_pixels)
            for i, page in zip(idx, pages):
                papers[i] = page
    else:
        papers = [render_mathtext(f, s, max_pixels=max_pixels) for f, s in zip(formulas, styles)]
    return [p if isinstance(p, RenderFailure) else finish_image(p, s, margin) for p, s in zip(papers, styles)]  # type: ignore[arg-type]


def finish_image(
    paper: np.ndarray, style: RenderStyle, margin: int = DEFAULT_MARGIN
) -> np.ndarray | RenderFailure:
    """Paper image (uint8, ink dark) -> optional degradation -> canonical float32 (H, W) cropped to ink.

    The paper is padded with white first so `texscribe.images` sees background on every border and
    never mistakes a tightly cropped formula's polarity.
    """
    if style.degrade_seed is not None:
        paper = photo_degrade(paper, style.degrade_seed)
    else:
        paper = np.pad(paper, margin + 4, constant_values=255)
    try:
        img = load_image(paper, origin=f"rendered {style.tag()}")
    except ImageError as exc:
        return RenderFailure("renderer_error", str(exc))
    if not has_ink(img):
        return RenderFailure("empty_output", "no ink left after rendering")
    return crop_to_ink(img, margin=margin)


def render_formula(
    latex: str, style: RenderStyle | None = None, renderer: str = "auto", *, margin: int = DEFAULT_MARGIN
) -> np.ndarray:
    """One formula -> canonical float32 (H, W) image; raises `RenderError` (with `.cause`) when it fails."""
    (out,) = render_formulas([latex], [style or RenderStyle()], renderer, margin=margin)
    if isinstance(out, RenderFailure):
        raise RenderError(out, latex)
    return out
