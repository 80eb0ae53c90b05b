"""Cleaning rules: each reason code fires on realistic labels, and clean labels pass untouched."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from texscribe.data.cleaning import (
    REASONS,
    Drop,
    LabelCleaner,
    rule_multiline,
    rule_ocr_error_marker,
    rule_out_of_vocab_chars,
    strip_math_delimiters,
)
from texscribe.data.sample import Sample
from texscribe.latex import parse_label, split_label


def sample(latex: str | None, pretokenized: bool = False) -> Sample:
    return Sample(
        id="s1", latex=latex, source="test", load=None, origin="test.tsv:3", pretokenized=pretokenized
    )


def reason(latex: str | None, pretokenized: bool = False, **kwargs) -> str | None:
    out = LabelCleaner(**kwargs)(sample(latex, pretokenized))
    return out.reason if isinstance(out, Drop) else None


@pytest.mark.parametrize(
    "latex, pretokenized",
    [
        ("\\begin{array}{cc} a & b \\\\ c & d \\end{array}", False),
        ("f(x)=\\begin{cases} 1 & x>0 \\\\ 0 \\end{cases}", False),
        ("\\begin{aligned} a &= b \\end{aligned}", False),  # no \\ at all: the environment alone counts
        ("\\begin{matrix} 1 & 2 \\end{matrix}", False),
        ("\\left( \\begin{matrix} { 0 } \\\\ { 1 } \\\\ \\end{matrix} \\right)", True),  # im2latex style
        ("a = b \\\\ c = d", False),
        ("\\begin {eqnarray*} x \\end {eqnarray*}", False),
        ("\\matrix { a & b \\cr c & d }", False),
    ],
)
def test_multiline(latex, pretokenized):
    assert reason(latex, pretokenized) == "multiline"


@pytest.mark.parametrize(
    "latex",
    [
        "",
        "   ",
        "$ $",
        "error",
        "ERROR",
        "\\text{error}",
        "recognition failed",
        "null",
        "\\text { A. }",  # an exam choice letter alone: no formula was recognised
        "\\text { (1), }",
        "\\text { ) }",
        "\\mbox{x} \\text{.}",
        "(*)",
        "()()",
        "The answer is shown below",
        "\\text{please see the figure}",
    ],
)
def test_ocr_error_marker(latex):
    assert reason(latex) == "ocr_error_marker"


@pytest.mark.parametrize(
    "latex",
    [
        "x^{2}+1",
        "\\text { A. } k>\\frac{3}{2}",  # marker prefix plus real math stays
        "\\operatorname{card}(A)=\\operatorname{card}(B)",  # upright names are math, not prose
        "\\left\\{a_{n}\\right\\}",
        "= = =",  # operators are math content
        "\\triangle A B C",
        "f(x)=",
        "\\sin x + \\cos y",
        "\\mathrm{d} x",
        "60^{\\circ}",
        "\\mbox{ rot }",  # one word in text mode is a real (CROHME) formula, not OCR debris
        "\\text{AC}",
        "{ \\mbox { w } \\mbox { q } }",
    ],
)
def test_clean_labels_are_kept(latex):
    out = LabelCleaner()(sample(latex))
    assert not isinstance(out, Drop), out
    assert out == parse_label(latex)


@pytest.mark.parametrize(
    "latex", ["x = 中文", "\u4e09\u89d2\u5f62 ABC", "x \u2264 y", "45\u00b0", "a\u00a0b"]
)
def test_out_of_vocab_chars(latex):
    assert reason(latex) == "out_of_vocab_chars"
    detail = rule_out_of_vocab_chars(latex, [])
    assert "U+" in detail


def test_too_long_and_limit_off():
    label = " ".join(["x", "+"] * 30) + " x"  # 61 tokens
    assert reason(label, True, max_label_len=60) == "too_long"
    assert reason(label, True, max_label_len=61) is None
    assert reason(label, True, max_label_len=None) is None


def test_a_huge_label_is_too_long_without_being_tokenised():
    """Found by benchmarks/fuzz_inputs.py: one 50 MB caption line (a zip bomb) kept data prepare busy for
    minutes tokenising 25 million tokens, only to drop them as too long."""
    label = "x " * 5_000_000
    start = time.perf_counter()
    dropped = LabelCleaner(max_label_len=512)(sample(label, pretokenized=True))
    assert time.perf_counter() - start < 1.0
    assert dropped.reason == "too_long" and "10,000,000 characters" in dropped.detail
    assert reason("x " * 600, True, max_label_len=512) == "too_long"  # under the character bound: counted


def test_bad_and_missing_labels():
    assert reason("x + \\", False) == "bad_label"  # lone trailing backslash: LabelError
    assert reason(None) == "missing_label"
    out = LabelCleaner()(sample("x + \\"))
    assert out.detail.startswith("test.tsv:3:")  # the detail names where the item came from


def test_pretokenized_and_raw_give_same_tokens():
    cleaner = LabelCleaner()
    raw = cleaner(sample("$\\frac12 + x^2$"))
    pre = cleaner(sample("\\frac { 1 } { 2 } + x ^ { 2 }", pretokenized=True))
    assert raw == pre == split_label("\\frac { 1 } { 2 } + x ^ { 2 }")


def test_rules_are_composable():
    only_length = LabelCleaner(max_label_len=3, rules={})
    dropped = only_length(sample("\\begin{cases} a \\\\ b \\end{cases}"))
    assert dropped.reason == "too_long"  # the multiline rule is not in this cleaner
    assert only_length(sample("\\\\", True)) == ["\\\\"]  # multiline rule switched off
    custom = LabelCleaner(rules={"no_pi": lambda raw, toks: "has pi" if "\\pi" in toks else None})
    assert custom(sample("2 \\pi r")) == Drop("no_pi", "test.tsv:3: has pi")


def test_rule_functions_return_none_for_clean_input():
    tokens = parse_label("a_{1}+b")
    assert rule_multiline("a_{1}+b", tokens) is None
    assert rule_ocr_error_marker("a_{1}+b", tokens) is None
    assert rule_out_of_vocab_chars("a_{1}+b", tokens) is None


def test_strip_math_delimiters():
    assert strip_math_delimiters(" $x$ ") == "x"
    assert strip_math_delimiters("$$a+b$$") == "a+b"
    assert strip_math_delimiters("\\[ y \\]") == "y"
    assert strip_math_delimiters("\\(z\\)") == "z"
    assert strip_math_delimiters("a$b") == "a$b"


def test_a_label_missing_an_argument_is_dropped_with_its_reason():
    """Issue 19 item 8: before, `\frac { 1 }` was kept as `\frac { 1 } { }` without a word."""
    for label, pretokenized in (("\\frac { 1 }", True), ("$\\frac{1}$", False), ("x ^", True)):
        out = LabelCleaner()(sample(label, pretokenized))
        assert isinstance(out, Drop) and out.reason == "bad_label" and " missing: the label" in out.detail
        assert out.detail.startswith("test.tsv:3: ")


def test_every_reason_is_documented():
    for code in ("multiline", "ocr_error_marker", "out_of_vocab_chars", "no_ink", "missing_image"):
        assert code in REASONS
    for code in ("missing_label", "too_long", "bad_image", "bad_label"):
        assert code in REASONS


@pytest.mark.shared
def test_real_labels_drop_rates(shared_data):
    """On real OCR-service labels only a small, explainable fraction is dropped; CROHME keeps everything."""
    import zipfile

    cleaner = LabelCleaner(max_label_len=None)
    lines = (shared_data / "formulas" / "k12_formulas.lst").read_text(encoding="utf-8").split("\n")
    counts = Counter()
    for line in lines[:20000]:
        out = cleaner(sample(line))
        counts[out.reason if isinstance(out, Drop) else "kept"] += 1
    assert counts["kept"] / sum(counts.values()) > 0.99
    # bad_label: `\text { C_ }`, a subscript without its argument (1 line in 20,000)
    assert set(counts) <= {"kept", "ocr_error_marker", "out_of_vocab_chars", "multiline", "bad_label"}
    with zipfile.ZipFile(shared_data / "crohme" / "crohme_offline.zip") as zf:
        captions = zf.read("data/train/caption.txt").decode("utf-8").splitlines()
    drops = [c for c in captions if isinstance(cleaner(sample(c.split("\t", 1)[1], True)), Drop)]
    assert drops == []
