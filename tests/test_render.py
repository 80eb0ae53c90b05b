"""Rendering printed formulas: real TeX, the mathtext fallback, degradations, corpus building, `data render`."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from texscribe.cli import main
from texscribe.data.prepared import PreparedDataset
from texscribe.errors import InputError
from texscribe.images import has_ink
from texscribe.latex import parse_label
from texscribe.render import tex as tex_module
from texscribe.render.corpus import CorpusSpec, build_corpus, is_held_out
from texscribe.render.degrade import Degradation, apply_degradation, photo_degrade
from texscribe.render.renderer import RenderError, choose_renderer, render_formula, render_formulas
from texscribe.render.style import FAILURE_CAUSES, RenderFailure, RenderStyle, StyleSpace
from texscribe.render.synthetic import synthesize
from texscribe.render.tex import (
    TexItem,
    check_formula,
    classify_error,
    parse_log,
    render_tex_batch,
    tex_font_status,
)

TEX_PROBLEM = tex_font_status().get("cm")
needs_tex = pytest.mark.skipif(
    TEX_PROBLEM is not None,
    reason=f"real-TeX rendering unavailable: {TEX_PROBLEM}",
)
GOOD = [r"\frac{a}{b}+\sqrt[3]{x^{2}}", r"\sum_{i=1}^{n}\alpha_{i}", r"E=mc^{2}", r"\int_{0}^{1}f(x)dx"]


def _assert_canonical_crop(img: np.ndarray, margin: int = 4) -> None:
    """Float32 in [0, 1], ink bright, background dark, cropped to the ink plus exactly `margin` px."""
    assert img.dtype == np.float32 and img.ndim == 2
    assert img.min() >= 0.0 and img.max() == pytest.approx(1.0)
    ink = img > 0.5
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert rows[0] == margin and rows[-1] == img.shape[0] - 1 - margin
    assert cols[0] == margin and cols[-1] == img.shape[1] - 1 - margin
    assert np.median(img) < 0.1  # mostly background, and the background is dark


# ------------------------------------------------------------------------------------------- TeX renderer
@needs_tex
@pytest.mark.parametrize("font", ["cm", "lm", "times", "palatino", "sans"])
def test_tex_renders_every_font_cropped_and_ink_bright(font: str) -> None:
    images = render_formulas(GOOD, [RenderStyle(font, 10.0, 200)] * len(GOOD), "tex")
    for img in images:
        assert not isinstance(img, RenderFailure), img
        _assert_canonical_crop(img)


@needs_tex
def test_tex_size_dpi_and_math_style_vary_within_one_batch() -> None:
    formula = r"\frac{x^{2}+1}{y}"
    styles = [
        RenderStyle("cm", 10.0, 150),
        RenderStyle("cm", 10.0, 300),
        RenderStyle("cm", 12.0, 150),
        RenderStyle("cm", 10.0, 150, display=False),
    ]
    base, double_dpi, bigger, text = render_formulas([formula] * 4, styles, "tex")  # one latex run

    def ink_h(im: np.ndarray) -> int:
        return im.shape[0] - 8  # height without the 4 px margins

    assert ink_h(double_dpi) / ink_h(base) == pytest.approx(2.0, rel=0.08)
    assert ink_h(bigger) / ink_h(base) == pytest.approx(1.2, rel=0.1)
    assert text.shape[0] < base.shape[0]  # text style sets fractions smaller
    assert np.array_equal(base, render_formula(formula, styles[0], "tex"))  # same pixels alone or batched


@needs_tex
def test_failing_formulas_report_their_cause_and_the_rest_render() -> None:
    bad = {
        r"\foo x": "undefined_control_sequence",
        r"x^{2}^{3}": "double_script",
        r"a & b": "alignment",
        "x = 中": "unicode_character",
        r"\left( x": "braces_or_arguments",
        r"\begin{foo} x \end{foo}": "undefined_environment",
        r"\def\x{1}\x": "unsafe_command",
        r"\begin{matrix} a": "unbalanced_environment",
        r"\,": "empty_output",
        r"\mathscr{x}": "missing_glyph",
    }
    formulas = [f for pair in zip(GOOD * 3, bad) for f in pair]
    results = render_tex_batch([TexItem(f, 10.0, 150) for f in formulas], "cm")
    for formula, result in zip(formulas, results):
        if formula in bad:
            assert isinstance(result, RenderFailure), formula
            assert result.cause == bad[formula], (formula, result)
            assert result.cause in FAILURE_CAUSES
        else:
            assert isinstance(result, np.ndarray) and result.dtype == np.uint8
    undefined = results[formulas.index(r"\foo x")]
    assert "\\foo" in undefined.detail


@needs_tex
def test_batch_recovers_when_a_formula_breaks_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the safety check, `\\iffalse` swallows the rest of the document and `\\stop` ends it: the
    batch is split until the culprits are alone, and every other formula still renders."""
    monkeypatch.setattr(tex_module, "check_formula", lambda latex: None)
    formulas = [GOOD[0], r"\iffalse", GOOD[1], GOOD[2], r"\stop", GOOD[3]]
    results = render_tex_batch([TexItem(f, 10.0, 120) for f in formulas], "cm")
    assert [isinstance(r, RenderFailure) for r in results] == [False, True, False, False, True, False]
    assert results[1].cause in ("other_tex_error", "fatal_error")


@needs_tex
def test_runaway_formula_times_out_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tex_module, "check_formula", lambda latex: None)
    formulas = [GOOD[0], r"\def\x{\x}\x"]  # an endless macro loop
    results = render_tex_batch([TexItem(f, 10.0, 120) for f in formulas], "cm", timeout=3.0)
    assert isinstance(results[0], np.ndarray)
    assert results[1] == RenderFailure("timeout", "latex ran longer than 3 s")


def test_safety_check_rejects_commands_that_could_break_the_batch() -> None:
    assert check_formula(r"\frac{a}{b}") is None
    assert check_formula(r"\begin{pmatrix} a \\ b \end{pmatrix}") is None
    for formula in (r"\input{/etc/passwd}", r"\immediate\write18{ls}", r"\catcode`\a=13", r"\iffalse x"):
        assert check_formula(formula).cause == "unsafe_command", formula
    assert check_formula("a % comment").cause == "unsafe_command"
    assert check_formula(r"100\%") is None
    assert check_formula(r"\begin{matrix} a \end{pmatrix}").cause == "unbalanced_environment"


def test_log_parsing_assigns_errors_to_formulas() -> None:
    log = (
        "<ts:begin:0>\n<ts:end:0>\n<ts:begin:1>\n! Undefined control sequence.\n<argument> \\bogus \n"
        "l.12 \\ts{1}{10}{\\bogus x}\n<ts:end:1>\n<ts:begin:2>\n! Missing $ inserted.\n<ts:end:2>\n"
        "Output written on b1.dvi (3 pages, 900 bytes).\n"
    )
    errors, intact = parse_log(log, 3)
    assert intact
    assert errors == {
        1: RenderFailure("undefined_control_sequence", "Undefined control sequence \\bogus"),
        2: RenderFailure("math_mode", "Missing $ inserted."),
    }
    _, intact = parse_log(log.replace("<ts:end:2>\n", ""), 3)
    assert not intact  # a formula that never finished: the batch must be split
    assert parse_log(log.replace("3 pages", "2 pages"), 3)[1] is False
    assert (
        classify_error("! TeX capacity exceeded, sorry [main memory size=5000000].").cause
        == "capacity_exceeded"
    )
    assert classify_error("! Something new.").cause == "other_tex_error"
    assert classify_error("no error here") is None


# ------------------------------------------------------------------------------------------- mathtext
def test_mathtext_fallback_renders_what_it_supports() -> None:
    for font in ("cm", "times", "sans"):
        img = render_formula(r"\frac{a}{b}+\sqrt{x^{2}}+\alpha_{i}", RenderStyle(font, 12.0, 200), "mathtext")
        _assert_canonical_crop(img)
    small = render_formula("x+y", RenderStyle("cm", 10.0, 100), "mathtext")
    large = render_formula("x+y", RenderStyle("cm", 10.0, 200), "mathtext")
    assert (large.shape[0] - 8) / (small.shape[0] - 8) == pytest.approx(2.0, rel=0.15)
    with pytest.raises(RenderError) as info:
        render_formula(r"\begin{pmatrix} a & b \end{pmatrix}", renderer="mathtext")
    assert info.value.cause == "mathtext_unsupported"
    with pytest.raises(RenderError) as info:
        render_formula(r"\foo", renderer="mathtext")
    assert info.value.cause == "mathtext_unsupported" and "foo" in str(info.value)


def test_auto_renderer_falls_back_to_mathtext_without_tex(monkeypatch: pytest.MonkeyPatch) -> None:
    from texscribe.render import renderer as renderer_module

    monkeypatch.setattr(
        renderer_module, "tex_font_status", lambda: dict.fromkeys(["cm", "sans"], "latex missing")
    )
    assert choose_renderer("auto", ["cm"]) == "mathtext"
    with pytest.raises(InputError, match="latex missing"):
        choose_renderer("tex", ["cm"])
    with pytest.raises(InputError, match="unknown font"):
        choose_renderer("auto", ["comic"])


# ------------------------------------------------------------------------------------------- degradation
def test_degradation_is_reproducible_and_keeps_the_formula_readable() -> None:
    paper = np.full((60, 200), 255, np.uint8)
    paper[20:40, 10:190:12] = 0  # vertical strokes
    paper[28:31, 10:190] = 0  # a rule
    first, again, other = photo_degrade(paper, 7), photo_degrade(paper, 7), photo_degrade(paper, 8)
    assert first.dtype == np.uint8 and np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape[0] > paper.shape[0] and first.shape[1] > paper.shape[1]  # skew margin, nothing clipped
    skewed = apply_degradation(
        paper, Degradation(angle=3.0, jpeg=30, noise=0.03, blur=0.8, paper=0.85, ink=0.2)
    )
    assert skewed.mean() < 255 * 0.9  # paper tone applied
    style = RenderStyle(degrade_seed=3)
    from texscribe.render.renderer import finish_image

    img = finish_image(paper, style)
    assert isinstance(img, np.ndarray) and has_ink(img)
    assert np.median(img) < 0.2  # still ink bright on a dark background after the photo effects


def test_style_space_is_deterministic_and_uses_every_choice() -> None:
    space = StyleSpace(fonts=("cm", "sans"), sizes=(10.0, 12.0), dpis=(100, 200), degrade=0.5, seed=1)
    assert space.pick("x+1") == space.pick("x+1")
    assert space.pick("x+1", 0) != space.pick("x+1", 1) or space.pick("x+1", 2) != space.pick("x+1", 0)
    styles = [space.pick(f"x+{i}") for i in range(400)]
    assert {s.font for s in styles} == {"cm", "sans"} and {s.dpi for s in styles} == {100, 200}
    degraded = sum(s.degrade_seed is not None for s in styles)
    assert 150 < degraded < 250
    assert StyleSpace(seed=2).pick("x+1") != StyleSpace(seed=1).pick("x+1") or True  # seeds may collide


# ------------------------------------------------------------------------------------------- corpus
def test_corpus_normalises_deduplicates_and_drops_with_reasons(tmp_path: Path) -> None:
    lines = [
        "x^2+1",
        "x^{2} + 1",
        "$x^2+1$",
        "\\frac12",
        "{a}^{b}_{c}",
        "",
        "error",
        "\\frac{a}{b",
        "a_{c}^{b}",
    ]
    path = tmp_path / "f.lst"
    path.write_text("\n".join(lines), encoding="utf-8")
    corpus = build_corpus([CorpusSpec.parse(str(path))])
    assert [f.latex for f in corpus.formulas] == ["x^{2}+1", "\\frac{1}{2}", "a_{c}^{b}"]
    assert [list(f.tokens) for f in corpus.formulas] == [
        parse_label("x^2+1"),
        parse_label("\\frac12"),
        parse_label("a_c^b"),
    ]
    reasons = sorted(s.reason for s in corpus.skipped)
    assert reasons == [
        "bad_label",
        "duplicate_formula",
        "duplicate_formula",
        "duplicate_formula",
        "ocr_error_marker",
    ]
    assert all("f.lst:" in s.detail for s in corpus.skipped)
    assert corpus.formulas[0].id.startswith("f-") and corpus.formulas[0].origin.endswith("f.lst:1")


def test_tokenized_file_and_multiline_option(tmp_path: Path) -> None:
    path = tmp_path / "tok.txt"
    path.write_text("x ^ { 2 }\n\\begin{pmatrix} a & b \\end{pmatrix}\n", encoding="utf-8")
    both = build_corpus([CorpusSpec.parse(str(path))], tokenized=True)
    assert [f.latex for f in both.formulas] == ["x^{2}", "\\begin{pmatrix}a&b\\end{pmatrix}"]
    single = build_corpus([CorpusSpec.parse(str(path))], tokenized=True, drop_multiline=True)
    assert len(single.formulas) == 1 and single.skipped[0].reason == "multiline"


def test_held_out_split_is_stable_across_order_and_limits(tmp_path: Path) -> None:
    formulas = [f"x_{{{i}}}+y^{{{i % 7}}}" for i in range(2000)]
    path = tmp_path / "a.lst"
    path.write_text("\n".join(formulas), encoding="utf-8")
    shuffled = formulas[:]
    random.Random(0).shuffle(shuffled)
    path_b = tmp_path / "b.lst"
    path_b.write_text("\n".join(shuffled), encoding="utf-8")
    a = build_corpus([CorpusSpec.parse(str(path))], held_out_fraction=0.1)
    b = build_corpus([CorpusSpec.parse(str(path_b))], held_out_fraction=0.1)
    held_a = {f.tokens for f in a.formulas if f.held_out}
    assert held_a == {f.tokens for f in b.formulas if f.held_out}
    assert 140 < len(held_a) < 260  # ~10 %
    limited = build_corpus([CorpusSpec.parse(str(path))], held_out_fraction=0.1, limit=300)
    assert len(limited.formulas) == 300
    assert {f.tokens for f in limited.formulas if f.held_out} == {
        f.tokens for f in a.formulas[:300] if f.held_out
    }
    assert not any(is_held_out(f.tokens, 0.0) for f in a.formulas)


def test_synthetic_corpus_is_reproducible_and_covers_the_grammar() -> None:
    first = list(synthesize(300, seed=5))
    assert first == list(synthesize(300, seed=5))
    assert first[100:] == list(synthesize(200, seed=5, start=100))  # extending keeps earlier formulas
    assert first != list(synthesize(300, seed=6))
    text = " ".join(first)
    for construct in (
        "\\frac",
        "^{",
        "_{",
        "\\sqrt",
        "\\begin{",
        "\\sum",
        "\\int",
        "\\alpha",
        "\\sin",
        "\\lim",
    ):
        assert construct in text, construct
    corpus = build_corpus([CorpusSpec.parse("synthetic")], limit=300, seed=5)
    assert len(corpus.formulas) + len(corpus.skipped) == 300
    assert all(s.reason == "duplicate_formula" for s in corpus.skipped)


def test_corpus_spec_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="NAME=PATH"):
        CorpusSpec.parse(str(tmp_path / "missing.lst"))
    with pytest.raises(InputError, match="k12=PATH"):
        CorpusSpec.parse(f"k12={tmp_path / 'nope.lst'}")
    evaluation = tmp_path / "im2latex_validate_formulas.lst"
    evaluation.write_text("x\n", encoding="utf-8")
    with pytest.raises(InputError, match="evaluation only"):
        CorpusSpec.parse(str(evaluation))
    bad = tmp_path / "latin1.lst"
    bad.write_bytes("x = \xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        build_corpus([CorpusSpec.parse(str(bad))])


@pytest.mark.shared
def test_real_corpora_normalise(shared_data: Path) -> None:
    specs = [CorpusSpec.parse("k12", shared_data), CorpusSpec.parse("crohme", shared_data)]
    corpus = build_corpus(specs, limit=400, held_out_fraction=0.05)
    assert corpus.read["k12"] >= 400 and corpus.read["crohme"] >= 400
    by_source = {s: [f for f in corpus.formulas if f.source == s] for s in ("k12", "crohme")}
    assert all(len(v) == 400 for v in by_source.values())
    for f in corpus.formulas:
        assert parse_label(f.latex) == list(f.tokens)  # the rendered source re-tokenises to the label
    assert 5 <= len(corpus.held_out) <= 70


# ------------------------------------------------------------------------------------------- data render
FORMULAS = [r"x^2+y^2=r^2", r"\frac{a+b}{c}", r"\sqrt{2}", r"\alpha_{i}\beta^{j}", r"\sum_{k=1}^{n}k",
            r"\int_0^1 x\,dx", r"\bogus{x}", r"\lim_{x\to0}\frac{\sin x}{x}=1", r"f(x)=\ln x", r"a\leq b",
            r"x^2+y^2=r^2"]  # fmt: skip


def _table(printed: str) -> dict[str, str]:
    """The key/value table `texscribe data render` prints."""
    return dict(re.match(r"(.*?)\s{2,}(.*)", line).groups() for line in printed.splitlines() if "  " in line)


def _run_render(tmp_path: Path, renderer: str, *extra: str) -> tuple[int, Path]:
    corpus = tmp_path / "mini.lst"
    corpus.write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    out = tmp_path / f"out-{renderer}"
    argv = ["data", "render", "--corpus", str(corpus), "--out", str(out), "--renderer", renderer]
    argv += ["--held-out-fraction", "0.25", "--workers", "2", "--batch-size", "4", "--no-progress", *extra]
    return main(argv), out


@needs_tex
def test_data_render_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out = _run_render(
        tmp_path, "tex", "--fonts", "cm", "sans", "--dpi", "120", "160", "--degrade", "0.3"
    )
    assert code == 0
    train, held = PreparedDataset.open(out), PreparedDataset.open(out / "held_out")
    assert len(train) + len(held) == 9  # 11 lines, 1 duplicate, 1 undefined command
    assert len(held) >= 1 and not {r.id for r in train} & {r.id for r in held}
    assert held.vocab.itos == train.vocab.itos  # the held-out part shares the training vocabulary
    for ds in (train, held):
        for record in ds:
            img = ds.load_image(record)
            assert img.shape == (record.height, record.width)
            assert img.max() == pytest.approx(1.0) and img[0].max() < 0.5 and img[:, -1].max() < 0.5
            assert record.image_path.parent.parent == ds.root
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    failures = {**report["render"]["compile_failures"], **held.report["render"]["compile_failures"]}
    assert failures == {"undefined_control_sequence": 1}
    assert report["counts"]["by_reason"].get("duplicate_formula") == 1
    skipped = {row["reason"]: row for row in csv.DictReader((out / "skipped.tsv").open(), delimiter="\t")}
    skipped_held = {
        row["reason"]: row
        for row in csv.DictReader((out / "held_out" / "skipped.tsv").open(), delimiter="\t")
    }
    undefined = skipped.get("undefined_control_sequence") or skipped_held["undefined_control_sequence"]
    assert "\\bogus" in undefined["detail"]
    assert "formulas/s" in (out / "report.md").read_text(encoding="utf-8")
    assert "render failed: undefined_control_sequence" in capsys.readouterr().out

    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    code, _ = _run_render(tmp_path, "tex", "--fonts", "cm", "sans", "--dpi", "120", "160", "--degrade", "0.3")
    assert code == 0 and _table(capsys.readouterr().out)["renderings new / cached"] == "0 / 10"  # all cached
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == mtimes

    code, _ = _run_render(tmp_path, "tex", "--fonts", "times", "--dpi", "120")  # another style: re-rendered
    assert code == 0 and len(PreparedDataset.open(out)) == len(train)
    assert set(p.name for p in (out / "images").iterdir()) == set(mtimes)


def test_data_render_with_mathtext_resumes_after_an_interruption(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out = _run_render(tmp_path, "mathtext", "--fonts", "cm", "--workers", "1")
    assert code == 0
    train, held = PreparedDataset.open(out), PreparedDataset.open(out / "held_out")
    assert len(train) + len(held) == 9
    assert json.loads((out / "report.json").read_text())["render"]["renderer"] == "mathtext"
    failures = {**train.report["render"]["compile_failures"], **held.report["render"]["compile_failures"]}
    assert failures == {"mathtext_unsupported": 1}  # \bogus
    capsys.readouterr()
    # an interrupted run: the state log lost its last 3 lines and one image was never written
    state = out / ".render_state.tsv"
    lines = state.read_text(encoding="utf-8").splitlines(keepends=True)
    state.write_text("".join(lines[:-3]), encoding="utf-8")
    train[0].image_path.unlink()
    code, _ = _run_render(tmp_path, "mathtext", "--fonts", "cm", "--workers", "1")
    assert code == 0 and _table(capsys.readouterr().out)["renderings new / cached"] in ("3 / 7", "4 / 6")
    assert len(PreparedDataset.open(out)) == len(train) and train[0].image_path.is_file()


def test_data_render_refuses_a_foreign_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "out-mathtext").mkdir()
    (tmp_path / "out-mathtext" / "notes.txt").write_text("mine")
    code, _ = _run_render(tmp_path, "mathtext")
    assert code == 2 and "not empty" in capsys.readouterr().err
