"""The shipped default model reads print: simple formulas rendered by the project's renderer (real TeX
where installed, else matplotlib mathtext) in three fonts come back token for token."""

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
    assert not got, f"{style.tag()}: read differently: {got}"
