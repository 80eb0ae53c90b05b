"""The shipped default model reads print: school formulas rendered by the project's renderer (real TeX
where installed, else matplotlib mathtext) in three fonts come back token for token (one miss allowed per
font, see SCHOOL_MAX_MISREAD), and paper-style
formulas (`\\left( \\right)` around fractions, `\\mathrm`, sums and products with limits, bold and
calligraphic letters) and matrices in two fonts at screenshot resolution mostly do."""

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
# (checked against every training set when this list was written).
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
# shipped model (2026-12-04): 13 and 11 of 16 exact; the default of 2026-12-05 (base-joint-6) reads 15 of 16
# in both, that of 2026-12-06 (base-small-4) 16 of 16 (15 read once). The bar leaves room for a retrained
# model's variation.
PAPER_STYLES = [RenderStyle(font="cm", size=10, dpi=120), RenderStyle(font="times", size=11, dpi=150)]
PAPER_MIN_EXACT = 12


def read_with_tex(shipped, formulas: list[str], style: RenderStyle) -> tuple[int, dict[str, str]]:
    """(exact readings, {formula: reading} of the others) of `formulas` rendered by TeX in `style`; skips
    where TeX with that font is missing (mathtext has neither the look of papers nor matrices)."""
    from texscribe.render.renderer import choose_renderer

    if choose_renderer("auto", [style.font]) != "tex":
        pytest.skip(f"TeX with the {style.font} font is not installed: mathtext is not the look of papers")
    images = render_formulas(formulas, [style] * len(formulas))
    assert all(isinstance(im, np.ndarray) for im in images), images
    preds = shipped.predict(images)
    wrong = {f: p.latex for f, p in zip(formulas, preds) if p.tokens != parse_label(f)}
    return len(formulas) - len(wrong), wrong


@pytest.mark.parametrize("style", PAPER_STYLES, ids=lambda s: s.tag())
def test_shipped_model_reads_paper_style_print(shipped, style: RenderStyle) -> None:
    exact, wrong = read_with_tex(shipped, PAPER_FORMULAS, style)
    assert exact >= PAPER_MIN_EXACT, (
        f"{style.tag()}: {exact}/{len(PAPER_FORMULAS)} exact; read differently: {wrong}"
    )


# Matrices, a determinant and cases, none among the training labels (checked against the paper renders
# `--multiline only` added to training, 2026-12-05).
MATRIX_FORMULAS = [
    r"\begin{pmatrix} p & q \\ r & s \end{pmatrix}",
    r"A = \begin{bmatrix} 1 & 0 \\ 0 & 1 \end{bmatrix}",
    r"\begin{vmatrix} x & y \\ z & w \end{vmatrix}",
    r"|x| = \begin{cases} x & x \geq 0 \\ -x & x < 0 \end{cases}",
    r"R = \begin{pmatrix} \cos \varphi & - \sin \varphi \\ \sin \varphi & \cos \varphi \end{pmatrix}",
    r"\mathbf{u} = \begin{bmatrix} u_{1} \\ u_{2} \\ u_{3} \end{bmatrix}",
]
# The first default trained on matrices (2026-12-05, 2 h with them) read 3 of 6 in both fonts; the annealed
# one after it (base-joint-6) reads 5 of 6 in both, and so does base-small-4: only the vmatrix is misread.
MATRIX_MIN_EXACT = 4


@pytest.mark.parametrize("style", PAPER_STYLES, ids=lambda s: s.tag())
def test_shipped_model_reads_matrices(shipped, style: RenderStyle) -> None:
    exact, wrong = read_with_tex(shipped, MATRIX_FORMULAS, style)
    assert exact >= MATRIX_MIN_EXACT, (
        f"{style.tag()}: {exact}/{len(MATRIX_FORMULAS)} exact; read differently: {wrong}"
    )
