"""LaTeX tokens: the one source of truth for how formulas become token sequences and back.

- `tokenize(text)` splits raw LaTeX into control words (`\\frac`), control symbols (`\\{`),
  environment markers (`\\begin{matrix}`) and single characters; white space only separates.
- `normalize(tokens)` maps spelling variants onto one canonical form so that equal formulas
  compare equal (see `NormalizeOptions`).
- `to_latex(tokens)` joins tokens back into valid LaTeX that re-tokenises to the same tokens.
- `Vocab` maps tokens to ids and travels with every dataset and checkpoint as JSON.

The canonical scheme is the CROHME caption scheme (WAP/CoMER): space-separated tokens, every
script / `\\frac` / `\\sqrt` argument braced, subscript before superscript, no grouping braces
that carry no argument, primes written `^ { \\prime }`, `\\limits`, sizes and spacing dropped:
`x _ { k } x x _ { k }`, `\\sum _ { i = 1 } ^ { n } a _ { i } ^ { \\prime }`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from texscribe.errors import LabelError

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)

_TOKEN_RE = re.compile(
    r"\\(?:begin|end)\s*\{\s*[a-zA-Z]+\*?\s*\}"  # environment markers are one token
    r"|\\(?:operatorname|hspace|vspace)\*"  # the starred commands that matter in formulas
    r"|\\[a-zA-Z]+|\\.|\S",
    re.DOTALL,
)
_CONTROL_WORD = re.compile(r"\\[a-zA-Z]+\*?")
_WS = re.compile(r"\s+")


def tokenize(text: str) -> list[str]:
    """Split raw LaTeX into tokens; `\\ ` (control space) is one token. Raises `LabelError` on a lone trailing `\\`."""
    if not isinstance(text, str):
        raise LabelError(f"label must be a string, got {type(text).__name__}")
    trailing = len(text) - len(text.rstrip("\\"))
    if trailing % 2:
        raise LabelError(f"label ends with a lone backslash: {text[-20:]!r}; escape it or remove it")
    tokens = []
    for tok in _TOKEN_RE.findall(text):
        if tok[0] == "\\" and len(tok) == 2 and tok[1].isspace():
            tok = "\\ "
        elif tok.startswith(("\\begin", "\\end")) and "{" in tok:
            tok = _WS.sub("", tok)
        tokens.append(tok)
    return tokens


def to_latex(tokens: Sequence[str]) -> str:
    """Join tokens into LaTeX, with a space only where the next token would otherwise glue onto a control word.

    Special tokens (`<unk>`, ...) carry no LaTeX and are left out; anything else that is not
    a single LaTeX token (e.g. `"ab"`) raises `LabelError`.
    """
    out: list[str] = []
    for tok in tokens:
        if tok in SPECIALS:
            continue
        try:
            single = tokenize(tok) == [tok]
        except LabelError:
            single = False
        if not single:
            raise LabelError(f"{tok!r} is not a single LaTeX token; cannot write it back as LaTeX")
        if out and _CONTROL_WORD.fullmatch(out[-1]) and (tok[0].isalpha() or tok[0] == "*"):
            out.append(" ")
        out.append(tok)
    return "".join(out)


@dataclass(frozen=True)
class NormalizeOptions:
    """Which variant-folding rules `normalize` applies (all on by default, except `drop_fonts`)."""

    drop_spacing: bool = True  # \, \; \quad \hspace{..} ~ carry no content for recognition
    drop_style: bool = True  # \displaystyle, \limits, \big.., size switches; \dfrac -> \frac
    brace_arguments: bool = True  # x^2 -> x ^ { 2 }; \frac12 -> \frac { 1 } { 2 }
    drop_left_right: bool = True  # \left( x \right) -> ( x ); \left. is dropped entirely
    drop_group_braces: bool = True  # braces that are no command's argument: {x}^{2} -> x ^ { 2 }
    order_scripts: bool = True  # x ^ { a } _ { b } -> x _ { b } ^ { a }
    fold_primes: bool = True  # x' , x \prime , x ^ { ' } -> x ^ { \prime }
    unwrap_text: bool = True  # \mbox{d} \text{A.} \mathrm{d} -> letters; \operatorname{sin} -> \sin
    drop_fonts: bool = False  # \mathbf{x} \boldsymbol{x} -> x (\mathbb, \mathcal always kept)
    drop_empty_scripts: bool = True  # x _ { } -> x
    split_glued_commands: bool = True  # \ltN -> < N (OCR output that lost a space)
    spelled_functions: bool = False  # l o g x -> \log x (handwriting truth typed without backslash)
    # \frac { 1 } -> \frac { 1 } { } (model outputs, symbol names like `\sqrt`); off: LabelError, for
    # dataset labels, which are never completed silently (`LABEL_OPTIONS`)
    fill_missing_arguments: bool = True


# How dataset labels are normalised (`parse_label`, `split_label`): a label that lacks an argument
# (`\frac { 1 }`, `x ^`, `\right` at the end) is an error naming what is missing, not a guess.
LABEL_OPTIONS = NormalizeOptions(fill_missing_arguments=False)


# One-token spelling variants of the same glyph.
SYNONYMS: dict[str, list[str]] = {
    "\\lt": ["<"], "\\gt": [">"], "\\le": ["\\leq"], "\\ge": ["\\geq"],
    "\\leqslant": ["\\leq"], "\\geqslant": ["\\geq"], "\\ne": ["\\neq"],
    "\\to": ["\\rightarrow"], "\\gets": ["\\leftarrow"],
    "\\lbrace": ["\\{"], "\\rbrace": ["\\}"], "\\lbrack": ["["], "\\rbrack": ["]"],
    "\\vert": ["|"], "\\lvert": ["|"], "\\rvert": ["|"], "\\mid": ["|"],
    "\\|": ["|", "|"], "\\Vert": ["|", "|"], "\\lVert": ["|", "|"], "\\rVert": ["|", "|"], "\\parallel": ["|", "|"],
    "\\dots": ["\\ldots"], "\\dotsc": ["\\ldots"], "\\dotso": ["\\ldots"], "\\mathellipsis": ["\\ldots"],
    "\\dotsb": ["\\cdots"], "\\dotsm": ["\\cdots"], "\\dotsi": ["\\cdots"],
    "\\cdotp": ["\\cdot"], "\\centerdot": ["\\cdot"], "\\ast": ["*"], "\\colon": [":"],
    "\\varepsilon": ["\\epsilon"], "\\lnot": ["\\neg"], "\\land": ["\\wedge"], "\\lor": ["\\vee"],
    "\\dag": ["\\dagger"], "\\implies": ["\\Longrightarrow"], "\\iff": ["\\Longleftrightarrow"],
    "\\sp": ["^"], "\\sb": ["_"], "\\textbf": ["\\mathbf"], "\\textit": ["\\mathit"], "\\bm": ["\\boldsymbol"],
    "%": ["\\%"], "$": [],
    "×": ["\\times"], "÷": ["\\div"], "±": ["\\pm"], "≤": ["\\leq"], "≥": ["\\geq"], "≠": ["\\neq"],
    "→": ["\\rightarrow"], "←": ["\\leftarrow"], "∞": ["\\infty"], "·": ["\\cdot"], "−": ["-"],
    "…": ["\\ldots"], "′": ["'"], "π": ["\\pi"], "α": ["\\alpha"], "β": ["\\beta"], "θ": ["\\theta"],
}  # fmt: skip
SPACING = {
    "\\,", "\\;", "\\:", "\\!", "\\>", "\\ ", "~", "\\quad", "\\qquad", "\\enspace", "\\thinspace",
    "\\medspace", "\\thickspace", "\\negthinspace", "\\enskip", "\\hfill", "\\smallskip",
}  # fmt: skip
STYLE = {
    "\\displaystyle", "\\textstyle", "\\scriptstyle", "\\scriptscriptstyle", "\\limits", "\\nolimits",
    "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\biggl", "\\biggr",
    "\\Biggl", "\\Biggr", "\\bigm", "\\Bigm", "\\middle", "\\tiny", "\\scriptsize", "\\footnotesize",
    "\\small", "\\normalsize", "\\large", "\\Large", "\\LARGE", "\\huge", "\\Huge", "\\nonumber", "\\protect",
}  # fmt: skip
STYLE_SYNONYMS = {"\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\cfrac": "\\frac", "\\dbinom": "\\binom",
                  "\\tbinom": "\\binom"}  # fmt: skip
# Commands dropped together with their (content-free) arguments, and how many arguments they take.
DROP_WITH_ARGS = {"\\hspace": 1, "\\hspace*": 1, "\\vspace": 1, "\\vspace*": 1, "\\label": 1, "\\color": 1,
                  "\\phantom": 1, "\\hphantom": 1, "\\vphantom": 1}  # fmt: skip
# Commands whose arguments are braced; `\\sqrt` and `\\xrightarrow` also take an optional `[...]`.
ARITY: dict[str, int] = {
    "^": 1, "_": 1, "\\frac": 2, "\\binom": 2, "\\sqrt": 1, "\\stackrel": 2, "\\overset": 2, "\\underset": 2,
    "\\xrightarrow": 1, "\\xleftarrow": 1, "\\overline": 1, "\\underline": 1, "\\hat": 1, "\\widehat": 1,
    "\\bar": 1, "\\vec": 1, "\\dot": 1, "\\ddot": 1, "\\tilde": 1, "\\widetilde": 1, "\\check": 1,
    "\\breve": 1, "\\acute": 1, "\\grave": 1, "\\mathring": 1, "\\overrightarrow": 1, "\\overleftarrow": 1,
    "\\overleftrightarrow": 1, "\\overparen": 1, "\\underparen": 1, "\\overbrace": 1, "\\underbrace": 1,
    "\\boxed": 1, "\\fbox": 1, "\\mathbf": 1, "\\boldsymbol": 1, "\\mathit": 1, "\\mathsf": 1, "\\mathtt": 1,
    "\\mathbb": 1, "\\mathcal": 1, "\\mathfrak": 1, "\\mathscr": 1, "\\mathrm": 1, "\\mbox": 1, "\\text": 1,
    "\\textrm": 1, "\\textnormal": 1, "\\textup": 1, "\\operatorname": 1, "\\operatorname*": 1, "\\mathop": 1,
}  # fmt: skip
_OPTIONAL_ARG = {"\\sqrt", "\\xrightarrow", "\\xleftarrow"}
TEXT_COMMANDS = {"\\mathrm", "\\mbox", "\\text", "\\textrm", "\\textnormal", "\\textup", "\\operatorname",
                 "\\operatorname*", "\\mathop"}  # fmt: skip
DROPPABLE_FONTS = {"\\mathbf", "\\boldsymbol", "\\mathit", "\\mathsf", "\\mathtt"}
# Old-style switches `{\bf x}` become the command form `\mathbf { x }`.
FONT_SWITCHES = {"\\bf": "\\mathbf", "\\rm": "\\mathrm", "\\it": "\\mathit", "\\mit": "\\mathit",
                 "\\sl": "\\mathit", "\\sf": "\\mathsf", "\\tt": "\\mathtt", "\\cal": "\\mathcal",
                 "\\boldmath": "\\boldsymbol"}  # fmt: skip


def _names(text: str) -> set[str]:
    return set(text.split())


def _commands(names: str) -> set[str]:
    return {"\\" + name for name in _names(names)}


# Operator names that `\\operatorname{..}` / `\\mathrm{..}` spell out and that have their own command.
FUNCTION_NAMES = _names(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh coth log ln lg exp lim max min sup inf det gcd"
)
# Known commands that take no argument: braces after them only group, so they are dropped.
SYMBOLS = _commands(" ".join(FUNCTION_NAMES)) | _commands(
    """alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho
    sigma tau upsilon phi chi psi omega varepsilon vartheta varpi varrho varsigma varphi Gamma Delta Theta
    Lambda Xi Pi Sigma Upsilon Phi Psi Omega infty partial nabla prime forall exists nexists neg emptyset
    varnothing angle triangle perp circ bullet cdot cdots ldots vdots ddots times div pm mp leq geq neq
    approx equiv sim simeq cong propto ll gg in notin ni subset supset subseteq supseteq subsetneq
    supsetneq cup cap bigcup bigcap setminus wedge vee oplus otimes odot sum prod coprod int iint iiint
    oint rightarrow leftarrow leftrightarrow Rightarrow Leftarrow Leftrightarrow longrightarrow
    longleftarrow Longrightarrow Longleftrightarrow mapsto uparrow downarrow langle rangle lfloor rfloor
    lceil rceil hbar ell imath jmath Re Im aleph wp top bot because therefore complement square star
    dagger mid parallel backslash not colon doteq models vdash Pr arg ker deg dim hom liminf limsup"""
)
_PRIMES = {"'", "\\prime"}
_GLUE_RE = re.compile(r"(\\[a-zA-Z]+?)([A-Z][a-zA-Z]*)")


MAX_NESTING = 100  # levels of groups/arguments/scripts inside each other; real formulas reach about 12


@dataclass
class _Group:
    """A `{ ... }` group in the parse tree."""

    items: list


def _parse(tokens: Sequence[str]) -> list:
    """Tokens -> nested list of tokens and `_Group`s. Raises `LabelError` on unbalanced braces."""
    stack: list[list] = [[]]
    for pos, tok in enumerate(tokens):
        if tok == "{":
            group = _Group([])
            stack[-1].append(group)
            stack.append(group.items)
        elif tok == "}":
            if len(stack) == 1:
                raise LabelError(
                    f"unbalanced braces: '}}' at token {pos + 1} closes nothing in {to_text(tokens)!r}"
                )
            stack.pop()
        else:
            stack[-1].append(tok)
    if len(stack) > 1:
        raise LabelError(f"unbalanced braces: {len(stack) - 1} '{{' never closed in {to_text(tokens)!r}")
    return stack[0]


def to_text(tokens: Sequence[str]) -> str:
    """Tokens as one space-separated string (the caption / .lst format)."""
    return " ".join(tokens)


class _Canon:
    """One pass over the parse tree that writes canonical tokens (see `NormalizeOptions`).

    Each `item` consumes one unit (a token with its arguments, a group, or a run of scripts) and
    appends its canonical tokens; `normalize` repeats passes until the output is a fixed point.
    """

    def __init__(self, opts: NormalizeOptions):
        self.o = opts
        self.depth = 0  # items being written, one inside the other

    def seq(self, nodes: list, sup: bool = False, base: bool = False) -> list[str]:
        """Canonical tokens of a node list.

        `sup`: directly inside a superscript, where primes are literal `\\prime`.
        `base`: the result is appended after other tokens, so a leading prime attaches to them.
        """
        nodes = self._rewrite(nodes)
        out: list[str] = []
        i = 0
        while i < len(nodes):
            i = self.item(nodes, i, out, sup, base and not out)
        return out

    def _rewrite(self, nodes: list) -> list:
        """Map token spellings, then infix `a \\over b` -> `\\frac`, `{\\bf x}` -> `\\mathbf { x }` at this level."""
        mapped: list = []
        for node in nodes:
            mapped.extend(self.token(node) if isinstance(node, str) else [node])
        if self.o.spelled_functions:
            mapped = _fold_spelled_functions(mapped)
        for k, node in enumerate(mapped):
            if node in ("\\over", "\\choose"):
                cmd = "\\frac" if node == "\\over" else "\\binom"
                return [cmd, _Group(mapped[:k]), _Group(mapped[k + 1 :])]
            if isinstance(node, str) and node in FONT_SWITCHES:
                return [*mapped[:k], FONT_SWITCHES[node], _Group(mapped[k + 1 :])]
        return mapped

    def token(self, tok: str) -> list[str]:
        if tok in STYLE_SYNONYMS and self.o.drop_style:
            return [STYLE_SYNONYMS[tok]]
        if self.o.split_glued_commands and _CONTROL_WORD.fullmatch(tok) and not _known(tok):
            m = _GLUE_RE.fullmatch(tok)
            if m and _known(m.group(1)):
                return [*self.token(m.group(1)), *m.group(2)]
        return SYNONYMS.get(tok, [tok])

    def item(self, nodes: list, i: int, out: list[str], sup: bool, base: bool = False) -> int:
        """Write the item starting at `nodes[i]` (a token with its arguments, a group, or scripts) to `out`.

        Every level of nesting (a group, an argument, a script) passes through here, so the depth is
        bounded here: `LabelError` past `MAX_NESTING` levels, instead of a RecursionError.
        """
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise LabelError(
                    f"nested {MAX_NESTING} or more levels deep (groups, arguments or scripts inside each "
                    "other); no formula is, so this is not one"
                )
            return self._item(nodes, i, out, sup, base)
        finally:
            self.depth -= 1

    def _item(self, nodes: list, i: int, out: list[str], sup: bool, base: bool) -> int:
        node = nodes[i]
        if isinstance(node, _Group):
            if not self.o.drop_group_braces:
                out.extend(["{", *self.seq(node.items, sup), "}"])
                return i + 1
            inner = self.seq(node.items, sup, base=bool(out) or base)
            if inner[:1] in (["^"], ["_"]) or (not inner and nodes[i + 1 : i + 2] in (["^"], ["_"])):
                out.extend(["{", "}"])  # an empty base: {}_{n} or tensor indices Q^{a}{}_{b} keep it
            out.extend(inner)
            return i + 1
        tok = node
        if tok in ("^", "_") or (tok in _PRIMES and self.o.fold_primes and (out or base) and not sup):
            return self.scripts(nodes, i, out)
        if tok in _PRIMES and self.o.fold_primes:
            out.append("\\prime")
            return i + 1
        if (self.o.drop_spacing and tok in SPACING) or (self.o.drop_style and tok in STYLE):
            return i + 1
        if tok in DROP_WITH_ARGS and (self.o.drop_spacing or tok in ("\\label", "\\color")):
            i += 1
            for _ in range(DROP_WITH_ARGS[tok]):
                _, i = self.arg(nodes, i, owner=f"{tok} argument")
            return i
        if tok in ("\\left", "\\right"):
            return self.delimiter(nodes, i, out)
        if tok == "\\not" and i + 1 < len(nodes) and nodes[i + 1] in ("=", "\\in"):
            out.append("\\neq" if nodes[i + 1] == "=" else "\\notin")
            return i + 2
        unwrap = (self.o.unwrap_text and tok in TEXT_COMMANDS) or (
            self.o.drop_fonts and tok in DROPPABLE_FONTS
        )
        if unwrap:
            arg, i = self.arg(nodes, i + 1, base=bool(out) or base, owner=f"{tok} argument")
            out.extend(_text_tokens(arg) if tok in TEXT_COMMANDS else arg)
            return i
        if tok in ARITY:
            out.append(tok)
            i += 1
            if tok in _OPTIONAL_ARG and i < len(nodes) and nodes[i] == "[":
                close = _closing_bracket(nodes, i)
                out.extend(["[", *self.seq(nodes[i + 1 : close]), "]"])
                i = close + 1
            for n in range(ARITY[tok]):
                owner = f"{tok} argument {n + 1} of {ARITY[tok]}" if ARITY[tok] > 1 else f"{tok} argument"
                arg, i, braced = self.arg(nodes, i, with_braced=True, owner=owner)
                out.extend(["{", *arg, "}"] if braced or self.o.brace_arguments else arg)
            return i
        out.append(tok)
        i += 1
        if tok.startswith(("\\begin{array", "\\begin{tabular")) or (
            _CONTROL_WORD.fullmatch(tok) and not _known(tok)
        ):
            # unknown command (or a column spec): the groups that follow are its arguments, keep them braced
            while i < len(nodes) and isinstance(nodes[i], _Group):
                out.extend(["{", *self.seq(nodes[i].items), "}"])
                i += 1
        return i

    def arg(
        self, nodes: list, i: int, sup: bool = False, with_braced: bool = False, base: bool = False,
        owner: str = "",
    ):  # fmt: skip
        """The argument starting at `nodes[i]` (skipping spacing): (tokens, next index[, was it braced]).
        None there: an empty one, or `LabelError` naming `owner` ("\\frac argument 2 of 2") unless
        `fill_missing_arguments`."""
        while i < len(nodes) and isinstance(nodes[i], str) and self._invisible(nodes[i]):
            i += 1
        if i >= len(nodes):
            if not self.o.fill_missing_arguments:
                raise LabelError(f"{owner} missing: the label or its {{...}} group ends before it")
            result: tuple = ([], i, False)
        elif isinstance(nodes[i], _Group):
            result = (self.seq(nodes[i].items, sup, base), i + 1, True)
        else:
            sub: list[str] = []
            j = self.item(nodes, i, sub, sup, base)
            result = (sub, j, False)
        return result if with_braced else result[:2]

    def _invisible(self, tok: str) -> bool:
        return (self.o.drop_spacing and tok in SPACING) or (self.o.drop_style and tok in STYLE)

    def scripts(self, nodes: list, i: int, out: list[str]) -> int:
        """A run of `^ a`, `_ b` and primes after one base, written sub first: `_ { b } ^ { \\prime a }`."""
        parts: list[tuple[str, list[str], bool]] = []  # (kind, tokens, braced)
        while i < len(nodes) and isinstance(nodes[i], str):
            tok = nodes[i]
            if tok in ("^", "_"):
                arg, i, braced = self.arg(
                    nodes, i + 1, sup=tok == "^", with_braced=True, owner=f"{tok} argument"
                )
                parts.append((tok, arg, braced))
            elif tok in _PRIMES and self.o.fold_primes:
                parts.append(("'", ["\\prime"], True))
                i += 1
            elif self._invisible(tok):
                i += 1
            else:
                break
        if self.o.drop_empty_scripts:
            parts = [p for p in parts if p[1]]
        primes = [p for p in parts if p[0] == "'"]
        subs = [p for p in parts if p[0] == "_"]
        sups = [p for p in parts if p[0] == "^"]
        if primes and len(sups) <= 1:  # x'^2 is x^{\prime 2} in LaTeX: one superscript
            merged = ("^", ["\\prime"] * len(primes) + (sups[0][1] if sups else []), True)
            first = next(k for k, p in enumerate(parts) if p[0] in ("'", "^"))
            parts = [
                merged if k == first else p
                for k, p in enumerate(parts)
                if k == first or p[0] not in ("'", "^")
            ]
            sups = [merged]
        else:
            parts = [("^", t, b) if k == "'" else (k, t, b) for k, t, b in parts]
        if self.o.order_scripts and len(subs) == 1 and len(sups) == 1:
            parts = [subs[0], sups[0]]
        for kind, tokens, braced in parts:
            out.extend([kind, "{", *tokens, "}"] if braced or self.o.brace_arguments else [kind, *tokens])
        return i

    def delimiter(self, nodes: list, i: int, out: list[str]) -> int:
        """`\\left` / `\\right` and its delimiter; `\\left.` is invisible, `\\left<` is an angle bracket."""
        keep = not self.o.drop_left_right
        if keep:
            out.append(nodes[i])
        i += 1
        if not self.o.fill_missing_arguments and (i >= len(nodes) or not isinstance(nodes[i], str)):
            raise LabelError(f"{nodes[i - 1]} has no delimiter after it")
        if i < len(nodes) and isinstance(nodes[i], str):
            delim = {"<": "\\langle", ">": "\\rangle"}.get(nodes[i], nodes[i])
            if delim != "." or keep:
                out.extend(self.token(delim))
            i += 1
        return i


def _known(tok: str) -> bool:
    return (
        tok in SYMBOLS or tok in ARITY or tok in SYNONYMS or tok in STYLE or tok in SPACING
        or tok in STYLE_SYNONYMS or tok in DROP_WITH_ARGS or tok in FONT_SWITCHES
        or tok in ("\\left", "\\right", "\\over", "\\choose", "\\atop", "\\hline")
    )  # fmt: skip


def _text_tokens(tokens: list[str]) -> list[str]:
    """Content of `\\mathrm{..}` / `\\operatorname{..}`: `s i n` becomes `\\sin`, anything else stays as letters."""
    word = "".join(tokens)
    if word in FUNCTION_NAMES and all(len(t) == 1 for t in tokens):
        return ["\\" + word]
    return tokens


def _fold_spelled_functions(nodes: list) -> list:
    """`2 l o g x` -> `2 \\log x`: single letters that spell a function name of 3+ letters (longest first)."""
    out: list = []
    i = 0
    while i < len(nodes):
        run = ""
        while i + len(run) < len(nodes) and _is_letter(nodes[i + len(run)]) and len(run) < 6:
            run += nodes[i + len(run)]
        name = next((run[:n] for n in range(len(run), 2, -1) if run[:n] in FUNCTION_NAMES), None)
        if name:
            out.append("\\" + name)
            i += len(name)
        else:
            out.append(nodes[i])
            i += 1
    return out


def _is_letter(node: object) -> bool:
    return isinstance(node, str) and len(node) == 1 and node.isascii() and node.isalpha()


def _closing_bracket(nodes: list, start: int) -> int:
    """Index of the `]` closing the `[` at `start` (nested `[...]` inside count)."""
    depth = 0
    for j in range(start, len(nodes)):
        if nodes[j] == "[":
            depth += 1
        elif nodes[j] == "]":
            depth -= 1
            if depth == 0:
                return j
    raise LabelError("unbalanced brackets: optional argument '[' never closed")


def normalize(tokens: Sequence[str], options: NormalizeOptions | None = None) -> list[str]:
    """Fold spelling variants onto one canonical token sequence (idempotent).

    Raises `LabelError` for unbalanced braces.
    """
    canon = _Canon(options or NormalizeOptions())
    out = canon.seq(_parse(list(tokens)))
    for _ in range(3):  # flattening `{x^2}_3` can expose one more fold; settle on the fixed point
        again = canon.seq(_parse(out))
        if again == out:
            break
        out = again
    return out


def normalize_lenient(tokens: Sequence[str], options: NormalizeOptions | None = None) -> list[str]:
    """`normalize` for model outputs: a malformed sequence (unbalanced braces) is returned as emitted, so it
    can still be scored (a missing `}` counts as one edit) instead of raising."""
    try:
        return normalize(tokens, options)
    except LabelError:
        return list(tokens)


def split_label(text: str, options: NormalizeOptions | None = None) -> list[str]:
    """Tokens of an already space-tokenised label (CROHME captions, im2latex .lst), normalised.

    Pieces that glue several tokens (`\\left(`) are split; a lone `\\` is the control space (im2markup
    writes `\\ ` so; like all spacing it is dropped). `LabelError` when an argument is missing
    (`LABEL_OPTIONS`, unless `options` says otherwise).
    """
    tokens: list[str] = []
    for piece in text.split():
        tokens.extend(["\\ "] if piece == "\\" else tokenize(piece))
    return normalize(tokens, options or LABEL_OPTIONS)


def parse_label(text: str, options: NormalizeOptions | None = None) -> list[str]:
    """Tokens of a raw LaTeX label (`$...$` delimiters allowed), normalised; `LabelError` when an argument
    is missing (`LABEL_OPTIONS`, unless `options` says otherwise)."""
    return normalize(tokenize(text), options or LABEL_OPTIONS)


class Vocab:
    """Token <-> id mapping with the four specials first (`<pad>`=0, `<sos>`=1, `<eos>`=2, `<unk>`=3)."""

    def __init__(self, tokens: Iterable[str]):
        seen = dict.fromkeys(SPECIALS)
        for tok in tokens:
            seen.setdefault(tok, None)
        self.itos: list[str] = list(seen)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Ids -> tokens, stopping at `<eos>` when `strip_specials`."""
        out = []
        for i in ids:
            i = int(i)
            if strip_specials:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.sos_id):
                    continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Vocabulary from token sequences, most frequent first (ties alphabetical, so builds are reproducible)."""
        counts = Counter(t for seq in sequences for t in seq)
        ordered = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(ordered)

    def to_json(self) -> str:
        return json.dumps({"tokens": self.itos}, ensure_ascii=False, indent=0)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_list(cls, itos: Sequence[str]) -> Vocab:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise LabelError(f"vocabulary must start with {SPECIALS}, got {tuple(itos[:4])}")
        return cls(itos[len(SPECIALS) :])

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_list(data["tokens"])


# ----------------------------------------------------------------------------------------------- display
def latex_string(tokens: Sequence[str]) -> str:
    """`to_latex`, or the tokens glued together when one of them is not a single LaTeX token (a model's
    output or a hand-edited list is shown as it is rather than rejected)."""
    try:
        return to_latex(tokens)
    except LabelError:
        return "".join(tokens)
