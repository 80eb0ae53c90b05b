"""Tokenizer, normaliser, LaTeX writer and vocabulary (texscribe.latex)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from texscribe.errors import LabelError
from texscribe.latex import (
    MAX_NESTING,
    NormalizeOptions,
    Vocab,
    normalize,
    normalize_lenient,
    parse_label,
    split_label,
    to_latex,
    tokenize,
)


def canon(text: str, **options) -> str:
    return " ".join(parse_label(text, NormalizeOptions(**options)))


# --- tokenize -----------------------------------------------------------------------------


def test_tokenize_splits_commands_symbols_and_characters():
    assert tokenize(r"\frac{a}{b}+\alpha_1") == [
        "\\frac",
        "{",
        "a",
        "}",
        "{",
        "b",
        "}",
        "+",
        "\\alpha",
        "_",
        "1",
    ]
    assert tokenize(r"\{x\} \\ y") == ["\\{", "x", "\\}", "\\\\", "y"]
    assert tokenize(r"\alpha2") == ["\\alpha", "2"]


def test_tokenize_keeps_environment_markers_and_starred_commands_whole():
    assert tokenize(r"\begin {matrix} a \end{matrix}") == ["\\begin{matrix}", "a", "\\end{matrix}"]
    assert tokenize(r"\operatorname*{lim}")[0] == "\\operatorname*"
    assert tokenize(r"\alpha*")[:2] == ["\\alpha", "*"]  # only the known starred forms glue the star


def test_tokenize_control_space_is_one_token():
    assert tokenize("a\\ b") == ["a", "\\ ", "b"]
    assert tokenize("p^2 \\ ") == ["p", "^", "2", "\\ "]  # real CROHME truth ends like this
    assert tokenize("a\\\nb") == ["a", "\\ ", "b"]


@pytest.mark.parametrize("bad", ["x \\", "a\\\\\\", 3, None])
def test_tokenize_rejects_lone_backslash_and_non_strings(bad):
    with pytest.raises(LabelError):
        tokenize(bad)


# --- normalisation rules, one per case (inputs are spellings seen in CROHME InkML / k12 OCR / im2latex) ---

RULES = [
    # braces on every script / frac / sqrt argument, grouping braces dropped
    ("x_k xx_k", "x _ { k } x x _ { k }"),
    (r"\frac12+\sqrt2", r"\frac { 1 } { 2 } + \sqrt { 2 }"),
    (r"\sqrt[3]{x}", r"\sqrt [ 3 ] { x }"),
    ("{v_1}^2 + {(a+b)}^{n}", "v _ { 1 } ^ { 2 } + ( a + b ) ^ { n }"),
    (r"\frac{{a^2}-a}{b}", r"\frac { a ^ { 2 } - a } { b }"),
    (r"\cos{\theta}", r"\cos \theta"),
    # subscript before superscript; \limits and \displaystyle dropped
    (r"\sum\limits^{n}_{i=1} i", r"\sum _ { i = 1 } ^ { n } i"),
    (r"\displaystyle\int_0^1", r"\int _ { 0 } ^ { 1 }"),
    # primes
    ("f'(x)", r"f ^ { \prime } ( x )"),
    ("f^{'}(x)", r"f ^ { \prime } ( x )"),
    (r"y = y \prime", r"y = y ^ { \prime }"),
    ("x''", r"x ^ { \prime \prime }"),
    ("x'^2_3", r"x _ { 3 } ^ { \prime 2 }"),
    # synonyms
    (r"a \lt b \gt c \le d \ge e \ne f", r"a < b > c \leq d \geq e \neq f"),
    (r"\leqslant \geqslant", r"\leq \geq"),
    (r"x \to 0, y \gets 1", r"x \rightarrow 0 , y \leftarrow 1"),
    (r"a_1, \dots, a_n \dotsb", r"a _ { 1 } , \ldots , a _ { n } \cdots"),
    (r"\lbrace x \rbrace \lbrack y \rbrack", r"\{ x \} [ y ]"),
    (r"\vert x \vert \mid \|y\| \parallel", "| x | | | | y | | | |"),
    (r"\not= \not\in", r"\neq \notin"),
    ("×÷≤", r"\times \div \leq"),
    ("50%", r"5 0 \%"),
    # \left / \right, sizes, spacing
    (r"\left( \frac{a}{b} \right)", r"( \frac { a } { b } )"),
    (r"\left. x \right| \Bigg( \big[", "x | ( ["),
    (r"\left< a \right>", r"\langle a \rangle"),
    (r"a\,b\;c\!d\quad e~f \hspace{1em} g \ h", "a b c d e f g h"),
    # text and operator names
    (r"R_\mathrm{L} + \mbox{d}s", "R _ { L } + d s"),
    (r"\mathrm{F^1_0}", "F _ { 0 } ^ { 1 }"),
    (r"\text { A. } k", "A . k"),
    (r"\operatorname{sin} x + \operatorname*{lim}", r"\sin x + \lim"),
    (r"\mathrm{Im}", "I m"),
    # old-style switches, infix fractions, frac variants
    (r"{\bf M}_+ {\rm d}x", r"\mathbf { M } _ { + } d x"),
    (r"{a \over b}", r"\frac { a } { b }"),
    (r"\dfrac{1}{2}\tfrac34", r"\frac { 1 } { 2 } \frac { 3 } { 4 }"),
    # unknown commands keep their braced arguments; known 0-arg commands do not take any
    (r"\overparen{AB} \overrightarrow{OP}", r"\overparen { A B } \overrightarrow { O P }"),
    (r"\foo{a}{b}", r"\foo { a } { b }"),
    # OCR output that glued a command onto a capital letter
    (r"M\ltN", "M < N"),
    (r"\LambdaBEF", r"\Lambda B E F"),
    # math delimiters and empty scripts
    ("$x$", "x"),
    ("d(y_{}, z)", "d ( y , z )"),
    # empty bases survive (tensor indices, isotopes)
    ("{}^{14}C", "{ } ^ { 1 4 } C"),
    ("Q^{a}{}_{b}", "Q ^ { a } { } _ { b }"),
    # environments
    (r"\begin{array}{cc} a & b \\ c & d \end{array}", r"\begin{array} { c c } a & b \\ c & d \end{array}"),
]


@pytest.mark.parametrize(("raw", "expected"), RULES)
def test_normalisation_rule(raw, expected):
    assert canon(raw) == expected
    tokens = expected.split()
    assert normalize(tokens) == tokens  # idempotent on its own output


def test_options_switch_rules_off():
    assert canon(r"\left( x \right)", drop_left_right=False) == r"\left ( x \right )"
    assert canon(r"\sum\limits_{i}", drop_style=False) == r"\sum \limits _ { i }"
    assert canon("x^{a}_{b}", order_scripts=False) == "x ^ { a } _ { b }"
    assert canon("x^2", brace_arguments=False) == "x ^ 2"
    assert canon("{x}", drop_group_braces=False) == "{ x }"
    assert canon("f'", fold_primes=False) == "f '"
    assert canon(r"\mbox{d}", unwrap_text=False) == r"\mbox { d }"
    assert canon(r"a\,b", drop_spacing=False) == r"a \, b"
    assert canon(r"\mathbf{x} \mathbb{R}", drop_fonts=True) == r"x \mathbb { R }"
    assert canon(r"\mathbf{x}") == r"\mathbf { x }"
    assert canon(r"\ltN", split_glued_commands=False) == r"\ltN"
    assert canon("2 log(x) + x sin x", spelled_functions=True) == r"2 \log ( x ) + x \sin x"
    assert canon("2 log(x)") == "2 l o g ( x )"


@pytest.mark.parametrize(
    ("raw", "caption"),
    [
        (r"$\sum \limits ^ {n} _ {i = 1} \lbrack i \rbrack$", r"\sum _ { i = 1 } ^ { n } [ i ]"),
        ("$f^{'}(x)$", r"f ^ { ' } ( x )"),
        (r"\int\limits_{0}^{R} {x^{2}} dx", r"\int \limits _ { 0 } ^ { R } x ^ { 2 } d x"),
        (r"\mathrm{P_1}\!", "P _ { 1 }"),
        (r"\left| \frac{a}{b} \right|", r"\left| \frac { a } { b } \right|"),  # im2latex glues \left|
    ],
)
def test_raw_and_pretokenized_labels_agree(raw, caption):
    assert parse_label(raw) == split_label(caption)


def test_split_label_handles_glued_pieces_and_lone_backslash():
    assert split_label(r"\left( x \right) \ y") == ["(", "x", ")", "y"]
    assert split_label(r"a \ b", NormalizeOptions(drop_spacing=False)) == ["a", "\\ ", "b"]


@pytest.mark.parametrize("bad", ["{x", "x}", r"\frac{a}{b", r"\sqrt[3 x"])
def test_malformed_labels_raise_label_error(bad):
    with pytest.raises(LabelError) as info:
        parse_label(bad)
    assert "unbalanced" in str(info.value)


def test_normalize_lenient_keeps_malformed_predictions():
    assert normalize_lenient(["x", "^", "2"]) == ["x", "^", "{", "2", "}"]
    assert normalize_lenient(["x", "^", "{", "2"]) == ["x", "^", "{", "2"]


# --- to_latex ------------------------------------------------------------------------------

REAL_LOOKING = [
    r"\frac{p e^{t}}{1-(1-p) e^{t}}",
    r"\int g = \lim_{n \rightarrow \infty} \int g_n",
    r"C_1 y_1^{(n-1)} + \ldots + C_n y_n^{(n-1)} = 0",
    r"\sqrt[n]{\frac{n+1}{(n-1)^2}}",
    r"\sin ^ { 2 } \theta + \cos^2\theta = 1",
    r"\left\{a_{n}\right\} \subseteq \mathbf{Z}",
    r"(\boldsymbol{c}-\boldsymbol{a}) \cdot \overrightarrow{C B}",
    r"\phi = \left( \begin{array} { c } { 0 } \\ { \phi _ { 0 } } \\ \end{array} \right)",
    r"x^{\prime}_{i} \geq \alpha b \mathrm{d} t \%",
]


@pytest.mark.parametrize("raw", REAL_LOOKING)
def test_to_latex_round_trips(raw):
    tokens = parse_label(raw)
    text = to_latex(tokens)
    assert parse_label(text) == tokens
    assert tokenize(text) == tokens  # canonical tokens come back verbatim, nothing re-folded


def test_to_latex_spacing_and_specials():
    assert to_latex(["\\alpha", "b", "\\beta", "2"]) == "\\alpha b\\beta2"
    assert to_latex(["\\sin", "x", "<unk>", "<eos>"]) == "\\sin x"
    for bad in (["ab"], ["\\"]):
        with pytest.raises(LabelError, match="not a single LaTeX token"):
            to_latex(bad)


_ATOMS = ["x", "2", "\\alpha", "+", "(", ")", "'", "\\sin", "|", "\\infty"]


@st.composite
def formulas(draw, depth: int = 0) -> str:
    """Random raw LaTeX built from the constructs the normaliser rewrites."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 6 if depth < 2 else 0))
        sub = (lambda: draw(formulas(depth + 1))) if kind else None
        if kind == 0:
            parts.append(draw(st.sampled_from(_ATOMS)))
        elif kind == 1:
            parts.append(f"\\frac{{{sub()}}}{{{sub()}}}")
        elif kind == 2:
            parts.append(f"x^{{{sub()}}}_{{{sub()}}}")
        elif kind == 3:
            parts.append(f"{{{sub()}}}")
        elif kind == 4:
            parts.append(f"\\sqrt[{sub()}]{{{sub()}}}")
        elif kind == 5:
            parts.append(f"\\left({sub()}\\right)")
        else:
            parts.append(f"\\mathrm{{{sub()}}}")
    return " ".join(parts)


@settings(max_examples=150, deadline=None)
@given(formulas())
def test_normalize_is_idempotent_and_to_latex_round_trips(raw):
    tokens = parse_label(raw)
    assert normalize(tokens) == tokens
    assert parse_label(to_latex(tokens)) == tokens


# --- Vocab ---------------------------------------------------------------------------------


def test_vocab_build_encode_decode_and_save(tmp_path):
    seqs = [split_label("x ^ { 2 }"), split_label("x + y")]
    vocab = Vocab.build(seqs)
    assert vocab.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert vocab.itos[4] == "x"  # most frequent first
    ids = vocab.encode(["x", "+", "\\zeta"])
    assert ids[-1] == vocab.unk_id
    assert vocab.decode([vocab.sos_id, *ids, vocab.eos_id, 5]) == ["x", "+", "<unk>"]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").itos == vocab.itos
    with pytest.raises(LabelError):
        Vocab.from_list(["x", "y"])


@pytest.mark.parametrize(
    ("label", "missing"),
    [
        ("\\frac { 1 }", "\\frac argument 2 of 2 missing"),
        ("x ^", "^ argument missing"),
        ("\\sqrt [ 3 ]", "\\sqrt argument missing"),
        ("{ x _ } 2", "_ argument missing"),
        ("\\mbox", "\\mbox argument missing"),
        ("( x \\right", "\\right has no delimiter"),
    ],
)
def test_a_label_missing_an_argument_is_an_error_not_completed(label, missing):
    """Issue 19 item 8: `\\frac { 1 }` was kept as `\\frac { 1 } { }`, `x ^` as `x`: a label is never
    completed silently. Model outputs and symbol names still are (`normalize`'s default)."""
    for read in (split_label, parse_label):
        with pytest.raises(LabelError, match=re.escape(missing)):
            read(label)
    assert normalize(tokenize("\\sqrt")) == ["\\sqrt", "{", "}"]
    assert normalize_lenient(tokenize("\\frac{1}")) == ["\\frac", "{", "1", "}", "{", "}"]


def test_labels_as_written_are_kept():
    """An explicitly empty argument is what the label says; a lone `\\` piece in a tokenised label is the
    control space of the im2markup scheme (19 real im2latex formulas end with one), dropped as spacing."""
    assert split_label("\\frac { 1 } { }") == ["\\frac", "{", "1", "}", "{", "}"]
    assert split_label("x \\ y \\") == ["x", "y"] == split_label("x \\, y \\;")


@pytest.mark.parametrize(
    "label",
    [
        "{" * 2000 + "x" + "}" * 2000,
        "\\sqrt" * 1000 + " x",
        "x" + "^" * 400 + "2",
        "\\frac{" * 500 + "x" + "}{y}" * 500,
    ],
)
def test_deep_nesting_is_a_label_error_not_a_recursion_error(label):
    """Found by benchmarks/fuzz_inputs.py: a caption nested a few hundred levels deep made `data prepare`
    die with RecursionError (the canonicaliser recurses once per level)."""
    with pytest.raises(LabelError, match=f"nested {MAX_NESTING} or more levels deep"):
        parse_label(label)
    assert normalize_lenient(tokenize(label)) == tokenize(label)  # model outputs are scored as emitted


def test_the_nesting_bound_is_far_above_real_formulas():
    deep = "{" * 40 + "x" + "}" * 40  # real captions nest at most ~12 levels
    assert parse_label(deep) == ["x"]
    assert parse_label("\\sqrt" * 40 + " x")[-42:-40] == ["{", "x"]
