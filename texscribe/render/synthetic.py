"""Grammar-based synthesis of formulas: fractions, scripts, roots, matrices, sums, integrals, Greek, functions.

Formula `i` of seed `s` depends only on `(s, i)`, so a synthetic corpus is reproducible and can be
extended without changing the formulas already drawn. Output is raw LaTeX; the corpus normalises it
with `texscribe.latex` like every other source.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from texscribe.render.style import stable_hash

LETTERS = "abcdefghijkmnpqrstuvwxyzABCDEFGHKLMNPQRSTUVWXYZ"


def _words(text: str) -> list[str]:
    return text.split()


GREEK = _words(
    "\\alpha \\beta \\gamma \\delta \\epsilon \\theta \\lambda \\mu \\pi \\rho \\sigma \\tau \\phi \\omega "
    "\\xi \\eta \\psi \\Delta \\Omega \\Sigma \\Phi \\Gamma \\Lambda"
)
FUNCTIONS = _words("\\sin \\cos \\tan \\log \\ln \\exp \\cot \\sec \\arcsin \\arctan \\sinh")
OPERATORS = ["+", "-", "+", "-", "\\pm", "\\cdot", "\\times", "\\div", ""]
RELATIONS = ["=", "=", "=", "<", ">", "\\leq", "\\geq", "\\neq", "\\approx", "\\equiv", "\\sim", "\\propto"]
ACCENTS = ["\\vec", "\\hat", "\\bar", "\\tilde", "\\dot", "\\overline", "\\overrightarrow"]
MATRICES = ["pmatrix", "bmatrix", "vmatrix", "matrix", "Bmatrix"]


class FormulaGrammar:
    """A small recursive grammar; `depth` bounds nesting so formulas stay readable (mostly 5-80 tokens)."""

    def __init__(self, rng: random.Random, max_depth: int = 2):
        self.r = rng
        self.max_depth = max_depth

    # ------------------------------------------------------------------ top level
    def formula(self) -> str:
        kind = self.r.choices(
            ["relation", "expression", "function", "bigop", "matrix", "set", "limit"],
            weights=[30, 20, 15, 12, 6, 7, 5],
        )[0]
        if kind == "relation":
            return f"{self.expr(0)} {self.r.choice(RELATIONS)} {self.expr(0)}"
        if kind == "function":
            name = self.r.choice(["f", "g", "h", "F", "y", "u", "P"])
            var = self.r.choice(["x", "t", "n", "z", "\\theta"])
            return f"{name}({var}) = {self.expr(0, var)}"
        if kind == "bigop":
            return f"{self.bigop(0)} = {self.expr(1)}"
        if kind == "matrix":
            return f"{self.atom()} = {self.matrix()}" if self.r.random() < 0.6 else self.matrix()
        if kind == "set":
            var = self.r.choice(["x", "n", "k"])
            rel = self.r.choice(["<", "\\leq", ">", "\\geq", "\\neq"])
            dom = self.r.choice(["\\mathbb{R}", "\\mathbb{N}", "\\mathbb{Z}", "\\mathbb{Q}", "A"])
            return f"\\{{ {var} \\in {dom} \\mid {var} {rel} {self.expr(1, var)} \\}}"
        if kind == "limit":
            var = self.r.choice(["x", "n", "h"])
            to = self.r.choice(["0", "\\infty", "1", "a", "+\\infty"])
            return f"\\lim_{{{var} \\to {to}}} {self.factor(1, var)} = {self.atom()}"
        return self.expr(0)

    # ------------------------------------------------------------------ building blocks
    def expr(self, depth: int, var: str | None = None) -> str:
        n = self.r.randint(1, 3 if depth == 0 else 2)
        parts = [self.term(depth, var)]
        for _ in range(n - 1):
            op = self.r.choice(OPERATORS)
            parts += [op, self.term(depth, var)] if op else [self.term(depth, var)]
        return " ".join(parts)

    def term(self, depth: int, var: str | None = None) -> str:
        factor = self.factor(depth, var)
        coef = self.number() if self.r.random() < 0.25 and not factor[0].isdigit() else ""
        return f"{coef} {factor}".strip()

    def factor(self, depth: int, var: str | None = None) -> str:
        if depth >= self.max_depth:
            return self.scripted(self.atom(var), depth)
        choice = self.r.choices(
            ["atom", "scripted", "frac", "sqrt", "func", "paren", "accent", "bigop", "binom"],
            weights=[25, 25, 14, 9, 10, 9, 4, 3 if depth == 0 else 0, 1],
        )[0]
        d = depth + 1
        if choice == "atom":
            return self.atom(var)
        if choice == "scripted":
            return self.scripted(self.atom(var), depth)
        if choice == "frac":
            return f"\\frac{{{self.expr(d, var)}}}{{{self.expr(d, var)}}}"
        if choice == "sqrt":
            index = f"[{self.r.choice(['3', 'n', '4'])}]" if self.r.random() < 0.25 else ""
            return f"\\sqrt{index}{{{self.expr(d, var)}}}"
        if choice == "func":
            power = f"^{{{self.r.choice(['2', '-1', 'n'])}}}" if self.r.random() < 0.2 else ""
            arg = self.atom(var) if self.r.random() < 0.5 else f"({self.expr(d, var)})"
            return f"{self.r.choice(FUNCTIONS)}{power} {arg}"
        if choice == "paren":
            left, right = self.r.choice([("(", ")"), ("[", "]"), ("\\{", "\\}"), ("|", "|")])
            inner = f"{left} {self.expr(d, var)} {right}"
            return self.scripted(inner, depth) if self.r.random() < 0.3 else inner
        if choice == "accent":
            return f"{self.r.choice(ACCENTS)}{{{self.atom(var)}}}"
        if choice == "binom":
            return f"\\binom{{{self.atom()}}}{{{self.atom()}}}"
        return self.bigop(d)

    def bigop(self, depth: int) -> str:
        i = self.r.choice(["i", "k", "j", "n"])
        hi = self.r.choice(["n", "N", "\\infty", "10", "m"])
        op = self.r.choice(["\\sum", "\\sum", "\\prod", "\\int", "\\int", "\\oint", "\\iint", "\\bigcup"])
        if op in ("\\int", "\\oint", "\\iint"):
            var = self.r.choice(["x", "t", "u", "\\theta"])
            lo, up = self.r.choice([("0", "1"), ("a", "b"), ("-\\infty", "\\infty"), ("0", "\\pi"), ("", "")])
            limits = f"_{{{lo}}}^{{{up}}}" if lo else ""
            return f"{op}{limits} {self.expr(min(depth + 1, self.max_depth), var)} \\, d {var}"
        return f"{op}_{{{i} = {self.r.choice(['0', '1'])}}}^{{{hi}}} {self.factor(min(depth + 1, self.max_depth), i)}"

    def matrix(self) -> str:
        rows, cols = self.r.randint(2, 3), self.r.randint(2, 3)
        env = self.r.choice(MATRICES)
        body = " \\\\ ".join(
            " & ".join(self.scripted(self.atom(), 2) for _ in range(cols)) for _ in range(rows)
        )
        return f"\\begin{{{env}}} {body} \\end{{{env}}}"

    def scripted(self, base: str, depth: int) -> str:
        roll = self.r.random()
        if roll < 0.35:
            return f"{base}^{{{self.small(sup=True)}}}"
        if roll < 0.6 and not base[0].isdigit():
            return f"{base}_{{{self.small()}}}"
        if roll < 0.7 and not base[0].isdigit():
            return f"{base}_{{{self.small()}}}^{{{self.small(sup=True)}}}"
        if roll < 0.75 and len(base) == 1 and base.isalpha():
            return f"{base}'"
        return base

    def small(self, sup: bool = False) -> str:
        """A short script: a digit, a letter, or a tiny expression like `n+1`, `-1`, `2k` (`*`, `T` on top)."""
        extra = ["*", "T", "-1", "\\prime"] if sup else ["j", "ij", "0"]
        return self.r.choice(["2", "3", "n", "k", "i", "n+1", "2k", "x", "n-1", "m", *extra])

    def atom(self, var: str | None = None) -> str:
        roll = self.r.random()
        if var is not None and roll < 0.35:
            return var
        if roll < 0.6:
            return self.r.choice(LETTERS)
        if roll < 0.78:
            return self.number()
        if roll < 0.95:
            return self.r.choice(GREEK)
        return self.r.choice(["\\infty", "\\pi", "e", "\\hbar", "\\ell", "\\partial x", "\\nabla f"])

    def number(self) -> str:
        roll = self.r.random()
        if roll < 0.6:
            return str(self.r.randint(1, 9))
        if roll < 0.85:
            return str(self.r.randint(10, 999))
        return f"{self.r.randint(0, 99)}.{self.r.randint(0, 99)}"


def synthesize(count: int, seed: int = 0, start: int = 0) -> Iterator[str]:
    """Formulas `start .. start+count-1` of the synthetic corpus for `seed` (raw LaTeX strings)."""
    for i in range(start, start + count):
        grammar = FormulaGrammar(random.Random(stable_hash(f"synthetic:{seed}:{i}")))
        formula = grammar.formula()
        while len(formula) < 6:  # a lone symbol teaches little: draw again (same stream, reproducible)
            formula = grammar.formula()
        yield formula
