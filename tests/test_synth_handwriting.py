"""Synthetic handwriting (texscribe.render.glyph_bank, handwriting_layout, handwriting, handwriting_dataset)."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from texscribe.cli import main
from texscribe.data.prepared import PreparedDataset
from texscribe.data.readers.inkml import parse_inkml
from texscribe.latex import split_label, to_latex, to_text
from texscribe.render.glyph_bank import GlyphBank, symbol_token
from texscribe.render.handwriting import missing_symbols, render_handwriting
from texscribe.render.handwriting_corpus import held_back_formulas, select_formulas
from texscribe.render.handwriting_layout import (
    FRACTION_BAR,
    ROOT,
    LayoutFailure,
    drawable_tokens,
    layout_formula,
    tighten_fractions,
)

BANK_FILES = 400  # train InkML files for the test bank: every common symbol, built in about a second


def _train_documents(shared: Path, limit: int):
    with zipfile.ZipFile(shared / "crohme" / "crohme_inkml.zip") as z:
        names = sorted(
            n for n in z.namelist() if n.startswith("crohme_inkml/train/") and n.endswith(".inkml")
        )
        for name in names[:limit]:
            yield PurePosixPath(name).stem, parse_inkml(z.read(name), name)


@pytest.fixture(scope="module")
def small_bank(shared_data) -> GlyphBank:
    bank, _ = GlyphBank.from_documents(_train_documents(shared_data, BANK_FILES))
    return bank


@pytest.fixture(scope="module")
def bank_file(small_bank, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bank") / "glyph_bank.npz"
    small_bank.save(path)
    return path


# --------------------------------------------------------------------------------------------- glyph bank
def test_symbol_labels_map_to_project_tokens():
    assert symbol_token("\\lt") == "<"
    assert symbol_token("\\gt") == ">"
    assert symbol_token("'") == "\\prime"
    assert symbol_token("\\sqrt") == "\\sqrt"
    assert symbol_token("\\alpha") == "\\alpha"
    assert symbol_token("x") == "x"
    assert symbol_token("COMMA") is None  # several tokens: not a symbol
    assert symbol_token("{") is None


def test_glyph_bank_from_real_inkml_files(shared_data, tmp_path):
    docs = list(_train_documents(shared_data, 25))
    bank, stats = GlyphBank.from_documents(docs)
    assert stats.files == 25
    assert stats.symbols == sum(len(d.symbols) for _, d in docs)
    assert len(bank) == stats.symbols - sum(stats.unmapped.values()) - stats.empty > 0
    assert sum(bank.counts().values()) == len(bank)
    assert "\\lt" not in bank.tokens and "\\gt" not in bank.tokens  # mapped to < and >
    for g in range(len(bank)):
        points = np.concatenate(bank.strokes(g))
        np.testing.assert_allclose(points.min(axis=0), 0.0, atol=1e-6)  # each glyph's box starts at 0
        np.testing.assert_allclose(np.ptp(points, axis=0), bank.glyph_size[g], atol=1e-5)
    # units are the file's letter height: the median letter/digit of a file is one unit tall
    letters = [g for g in range(len(bank)) if len(t := bank.tokens[bank.glyph_token[g]]) == 1 and t.isalnum()]
    assert 0.7 < float(np.median(bank.glyph_size[letters, 1])) < 1.3
    first_id, first = docs[0]
    expected_writer = first.annotations.get("writer") or f"file:{first_id}"
    assert expected_writer in bank.writers
    path = tmp_path / "bank.npz"
    bank.save(path)
    again = GlyphBank.load(path)
    assert again.tokens == bank.tokens and again.writers == bank.writers
    np.testing.assert_array_equal(again.points, bank.points)
    np.testing.assert_array_equal(again.glyph_strokes, bank.glyph_strokes)


# --------------------------------------------------------------------------------------------- layout
def _layout(label: str):
    boxes = layout_formula(split_label(label))
    assert not isinstance(boxes, LayoutFailure), boxes
    return boxes


def _one(boxes, token):
    found = [b for b in boxes if b.token == token]
    assert len(found) == 1, (token, boxes)
    return found[0]


def test_layout_of_a_fraction():
    boxes = _layout("\\frac { a } { b }")
    bar, a, b = _one(boxes, FRACTION_BAR), _one(boxes, "a"), _one(boxes, "b")
    assert bar.kind == "bar" and bar.height < 0.2 * bar.width
    assert a.y1 <= bar.y0 and b.y0 >= bar.y1  # numerator above the bar, denominator below
    for part in (a, b):
        assert bar.x0 - 0.5 < part.x0 and part.x1 < bar.x1 + 0.5
        assert part.width > 0 and part.height > 0
    tight = tighten_fractions(boxes, keep=0.0)
    assert _one(tight, "a").y1 == pytest.approx(bar.y0) and _one(tight, "b").y0 == pytest.approx(bar.y1)


def test_layout_of_a_superscript():
    x, two = _one(_layout("x ^ { 2 }"), "x"), _one(_layout("x ^ { 2 }"), "2")
    assert two.x0 > x.x0 + 0.5 * x.width  # to the right
    assert (two.y0 + two.y1) / 2 < (x.y0 + x.y1) / 2  # raised
    assert two.size < x.size


def test_layout_of_a_root_and_a_function_name():
    boxes = _layout("\\sqrt { x } + \\sin y")
    root, x = _one(boxes, ROOT), _one(boxes, "x")
    assert root.kind == "root" and root.inner_x0 is not None
    assert root.x0 < root.inner_x0 <= x.x0 and x.x1 <= root.x1 + 0.5  # the overbar covers the radicand
    assert root.y0 < x.y0 and root.y1 >= x.y1 - 0.5
    sin = _one(boxes, "\\sin")
    assert sin.kind == "function" and sin.width > 2 * x.width  # s, i, n laid out as one symbol


def test_layout_draws_exactly_the_drawable_tokens():
    tokens = split_label("\\sqrt [ 3 ] { x } + \\sum _ { i = 1 } ^ { n } \\frac { 1 } { i } \\cdots")
    boxes = layout_formula(tokens)
    assert not isinstance(boxes, LayoutFailure)
    counts = drawable_tokens(tokens)
    assert counts["["] == 0 and counts["{"] == 0 and counts[FRACTION_BAR] == 1
    assert sorted(b.token for b in boxes) == sorted(counts.elements())
    assert isinstance(layout_formula(split_label("\\begin{matrix} a \\end{matrix}")), LayoutFailure)


# --------------------------------------------------------------------------------------------- images
def test_generated_image_looks_like_a_crohme_bitmap(small_bank, shared_data):
    tokens = split_label("\\frac { x + 1 } { 2 } = \\sqrt { y }")
    assert missing_symbols(tokens, small_bank) == []
    image = render_handwriting(tokens, small_bank, np.random.default_rng(0))
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 2
    assert set(np.unique(image)) <= {0, 255}  # binary like the CROHME bitmaps
    ink = image > 127
    assert 0.02 < ink.mean() < 0.35  # white strokes on a mostly black background
    assert not ink[:3].any() and not ink[-3:].any() and not ink[:, :3].any() and not ink[:, -3:].any()
    assert 40 <= image.shape[0] <= 250 and image.shape[1] >= 40  # CROHME scale: ~28 px strokes
    with zipfile.ZipFile(shared_data / "crohme" / "crohme_offline.zip") as z:
        real = (np.frombuffer(z.read("data/train/img/MfrDB2656.bmp"), np.uint8), "\\frac { 2 } { 4 }")
    import cv2

    real_img = cv2.imdecode(real[0], cv2.IMREAD_GRAYSCALE)
    assert _stroke_width(image) == pytest.approx(_stroke_width(real_img), rel=0.35)
    again = render_handwriting(tokens, small_bank, np.random.default_rng(0))
    np.testing.assert_array_equal(image, again)  # reproducible from the generator


def _stroke_width(image: np.ndarray) -> float:
    """Mean stroke width in px: twice the ink area over the contour length."""
    import cv2

    mask = (image > 127).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return 2 * mask.sum() / max(1, sum(len(c) for c in contours))


# --------------------------------------------------------------------------------------------- formulas
def test_crohme_2014_formulas_are_excluded(shared_data, tmp_path):
    crohme = shared_data / "crohme" / "crohme_offline.zip"
    held_back = held_back_formulas(crohme)
    assert len(held_back) > 800
    some_tests = sorted(held_back)[:20]
    extra = tmp_path / "extra.lst"
    extra.write_text("\n".join([to_latex(t.split()) for t in some_tests] + ["x ^ { 2 } + 7 y"]) + "\n")
    selection = select_formulas(crohme, [extra], lambda tokens: [])
    chosen = {to_text(f.tokens) for f in selection.formulas}
    assert not chosen & held_back
    assert "x ^ { 2 } + 7 y" in chosen
    dropped = {s.id.split("-")[0] for s in selection.skipped if s.reason == "crohme_2014_formula"}
    assert {"extra", "crohme"} <= dropped  # 2014 formulas among the extra file and the train captions
    assert all(t in selection.vocab for f in selection.formulas for t in f.tokens)


def test_formulas_held_out_of_the_printed_renders_are_never_drawn(shared_data, tmp_path):
    """A formula the printed renders hold out (by its hash) stays unseen as handwriting too, so the printed
    held-out figure of a model trained on both measures formulas it never saw in any form."""
    from texscribe.render.corpus import DEFAULT_HELD_OUT_FRACTION, is_held_out

    held, kept = "x ^ { 2 } + 2 0 y", "x ^ { 2 } + 7 y"
    assert is_held_out(held.split(), DEFAULT_HELD_OUT_FRACTION)
    assert not is_held_out(kept.split(), DEFAULT_HELD_OUT_FRACTION)
    extra = tmp_path / "extra.lst"
    extra.write_text(f"{to_latex(held.split())}\n{to_latex(kept.split())}\n")
    selection = select_formulas(shared_data / "crohme" / "crohme_offline.zip", [extra], lambda tokens: [])
    chosen = {to_text(f.tokens) for f in selection.formulas}
    assert kept in chosen and held not in chosen
    assert any(s.reason == "printed_held_out" and held in s.detail for s in selection.skipped)


# --------------------------------------------------------------------------------------------- CLI
def test_cli_writes_a_prepared_dataset_and_resumes(shared_data, bank_file, tmp_path, capsys):
    out = tmp_path / "hw"
    args = ["data", "synth-handwriting", "--out", str(out), "--count", "12", "--seed", "3", "--workers", "1"]
    args += ["--bank", str(bank_file), "--data-root", str(shared_data), "--formulas", "--no-progress"]
    assert main(args) == 0
    ds = PreparedDataset.open(out)
    assert len(ds) == 12
    for record in ds:
        image = ds.load_image(record)
        assert image.shape == (record.height, record.width) and image.max() == 1.0
        assert all(t in ds.vocab for t in record.tokens)
        assert record.source == "synth_handwriting:crohme"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Synthetic handwriting" in report and "symbol_not_in_bank" in report
    skipped = (out / "skipped.tsv").read_text(encoding="utf-8")
    assert "crohme_2014_formula" in skipped
    first = {r.id: r.image_path.read_bytes() for r in ds}
    capsys.readouterr()
    assert main(args) == 0  # a re-run reuses every image
    assert "0 / 12" in capsys.readouterr().out
    assert {r.id: r.image_path.read_bytes() for r in PreparedDataset.open(out)} == first
