"""Printed formulas: LaTeX -> images (real TeX, mathtext fallback), photo-like degradation, formula corpus.

- `renderer.render_formula(latex, RenderStyle(...))` / `render_formulas(...)`: canonical images.
- `corpus.build_corpus([...])`: normalised, deduplicated formulas with a stable held-out split.
- `render_dataset.render_dataset(corpora, out, ...)`: the prepared dataset behind `texscribe data render`.

Kept import-free so `texscribe --help` stays fast; import the submodules.
"""
