"""The shipped default model reads print: school formulas rendered by the project's renderer (real TeX
where installed, else matplotlib mathtext) in three fonts come back token for token (one miss allowed per
font, see SCHOOL_MAX_MISREAD), and paper-style
formulas (`\\left( \\right)` around fractions, `\\mathrm`, sums and products with limits, bold and
calligraphic letters) in two fonts at screenshot resolution mostly do."""

from __future__ import annotations

import numpy as np
import pytest

from texscribe.latex import parse_label
from texscribe.render.renderer import render_formulas
from texscribe.render.style import RenderStyle

# School-level formulas of the kind users screenshot; none is a training formula of its own rendering
# (the printed corpus holds out by formula hash, and these are checked against no split).
FORMULAS = [
    r"x^{2}+1",
    r"a+b=c",
    r"\frac{1}{2}",
    r"y=2x+3",
    r"\sqrt{x+1}",
    r"x_{1}+x_{2}",
    r"(a+b)^{2}",
    r"\frac{a}{b}+c",
    r"2x-5=7",
]
STYLES = [RenderStyle(font="cm", size=12, dpi=200), RenderStyle(font="lm", size=12, dpi=300),
          RenderStyle(font="times", size=12, dpi=250)]  # fmt: skip


# The `small` default of 2026-11-22 read all 27; the `base` default of 2026-12-04 (77 % on held-out printed
# formulas against 46 %) reads 26: Latin Modern 12 pt at 300 dpi `\frac{1}{2}` comes back as
# `\frac{1}{2}=\frac{1}{2}` (a short formula at the large end of the rendered sizes; docs/MODEL_CARD.md).
SCHOOL_MAX_MISREAD = 1


@pytest.fixture(scope="module")
def shipped():
    from texscribe import load_model

    return load_model("default")


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.tag())
def test_shipped_model_reads_rendered_formulas_exactly(shipped, style: RenderStyle) -> None:
    images = render_formulas(FORMULAS, [style] * len(FORMULAS))
    assert all(isinstance(im, np.ndarray) for im in images), images  # a RenderFailure says why
    preds = shipped.predict(images)
    got = {f: p.latex for f, p in zip(FORMULAS, preds) if p.tokens != parse_label(f)}
    assert len(got) <= SCHOOL_MAX_MISREAD, f"{style.tag()}: read differently: {got}"


# Paper-style formulas of the kind people screenshot from articles, none among the model's training labels
# (checked against every training set when this list was written). Multi-line formulas (matrices, arrays,
# aligned) are out of scope: `data prepare` drops them from every source, so no model is trained on them.
PAPER_FORMULAS = [
    r"\left( \frac{a}{b} \right)^{2}",
    r"\int_{0}^{T} g(t) \, \mathrm{d}t",
    r"\sum_{i=1}^{n} x_{i}^{2}",
    r"\mathrm{Tr} \left( A B \right)",
    r"\frac{\partial u}{\partial t} = \Delta u",
    r"\lim_{k \to \infty} b_{k} = L",
    r"\mathbf{v} \cdot \mathbf{w}",
    r"\frac{\mathrm{d}y}{\mathrm{d}x} = k y",
    r"\left\| x \right\|_{2}",
    r"\mathcal{L} = \frac{1}{2} m \dot{q}^{2}",
    r"\sum_{k=0}^{\infty} \frac{z^{k}}{k!}",
    r"\left[ \hat{H}, \rho \right] = 0",
    r"\nabla \times \mathbf{B} = \mu_{0} \mathbf{J}",
    r"\prod_{p} \left( 1 - p^{-s} \right)^{-1}",
    r"\mathrm{e}^{-\beta E_{n}}",
    r"\langle \psi | \phi \rangle",
]
# Computer Modern at im2latex's look (10 pt, 120 dpi: ~7 px symbols) and Times at 150 dpi. Measured with the
# shipped model (2026-12-04): 13 and 11 of 16 exact; the bar leaves room for a retrained model's variation.
PAPER_STYLES = [RenderStyle(font="cm", size=10, dpi=120), RenderStyle(font="times", size=11, dpi=150)]
PAPER_MIN_EXACT = 10


@pytest.mark.parametrize("style", PAPER_STYLES, ids=lambda s: s.tag())
def test_shipped_model_reads_paper_style_print(shipped, style: RenderStyle) -> None:
    from texscribe.render.renderer import choose_renderer

    if choose_renderer("auto", [style.font]) != "tex":
        pytest.skip(f"TeX with the {style.font} font is not installed: mathtext is not the look of papers")
    images = render_formulas(PAPER_FORMULAS, [style] * len(PAPER_FORMULAS))
    assert all(isinstance(im, np.ndarray) for im in images), images
    preds = shipped.predict(images)
    wrong = {f: p.latex for f, p in zip(PAPER_FORMULAS, preds) if p.tokens != parse_label(f)}
    exact = len(PAPER_FORMULAS) - len(wrong)
    assert exact >= PAPER_MIN_EXACT, (
        f"{style.tag()}: {exact}/{len(PAPER_FORMULAS)} exact; read differently: {wrong}"
    )
