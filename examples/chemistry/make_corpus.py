"""Build the chemistry formula corpus for `texscribe data render` from `species_and_reactions.txt`.

Every compound, ion and reaction of the source list is parsed, every reaction is checked for balance
(atoms of each element and total charge, electrons `e^-` included), and each item is written as LaTeX,
one formula a line (in a seeded random order), in the plain style that needs no package:
`\\mathrm{H}_{2}\\mathrm{SO}_{4}`, `\\mathrm{SO}_{4}^{2-}`, `\\rightleftharpoons`, `\\xrightarrow{\\Delta}`,
`\\uparrow` (mhchem's `\\ce{}` is not among the project's TeX packages). Letter runs sit in `\\mathrm{}` groups
without nested braces, so the label cleaner's prose check does not mistake `NaOH` or `CuSO` for words;
the normaliser drops `\\mathrm`, so the tokens are the plain letters. A reaction written with state
symbols also yields its bare form.

    python examples/chemistry/make_corpus.py --out runs/chemistry/corpus.txt
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "species_and_reactions.txt"
ARROWS = {"->": " \\rightarrow ", "<=>": " \\rightleftharpoons ", "->[heat]": " \\xrightarrow{\\Delta} "}
MARKS = {"^": "\\uparrow ", "v": "\\downarrow "}
STATES = ("(s)", "(l)", "(g)", "(aq)")
_SPECIES = re.compile(r"^(\d*)([A-Za-z0-9()\[\]*]+?)(\^(\d*)([+-]))?(\((?:s|l|g|aq)\))?$")
_ELEMENT = re.compile(r"([A-Z][a-z]?)(\d*)")


class ChemError(ValueError):
    """A line of the source list that does not parse or does not balance."""


def atoms(formula: str) -> Counter:
    """Element counts of `Ca(OH)2`, `[Cu(NH3)4]SO4`, `CuSO4*5H2O` (hydrate parts may carry a count)."""
    total: Counter = Counter()
    for part in formula.split("*"):
        m = re.match(r"(\d*)(.*)", part)
        count, body = int(m.group(1) or 1), m.group(2)
        for element, n in _group_atoms(body).items():
            total[element] += count * n
    return total


def _group_atoms(text: str) -> Counter:
    stack: list[Counter] = [Counter()]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([":
            stack.append(Counter())
            i += 1
        elif ch in ")]":
            m = re.match(r"\d*", text[i + 1 :])
            mult = int(m.group(0) or 1)
            if len(stack) == 1:
                raise ChemError(f"unbalanced bracket in {text!r}")
            inner = stack.pop()
            for element, n in inner.items():
                stack[-1][element] += n * mult
            i += 1 + len(m.group(0))
        else:
            m = _ELEMENT.match(text, i)
            if not m:
                raise ChemError(f"cannot read {text[i:]!r} in {text!r}")
            stack[-1][m.group(1)] += int(m.group(2) or 1)
            i = m.end()
    if len(stack) != 1:
        raise ChemError(f"unbalanced bracket in {text!r}")
    return stack[0]


def parse_species(text: str) -> tuple[int, str, int, str]:
    """`2SO4^2-(aq)` -> (coefficient 2, formula SO4, charge -2, state "(aq)")."""
    m = _SPECIES.match(text)
    if not m:
        raise ChemError(f"not a species: {text!r}")
    coef, formula, charged, size, sign, state = m.groups()
    charge = (int(size or 1) * (1 if sign == "+" else -1)) if charged else 0
    if formula != "e":
        atoms(formula)  # raises on a malformed formula
    return int(coef or 1), formula, charge, state or ""


def species_latex(text: str, keep_state: bool = True) -> str:
    coef, formula, charge, state = parse_species(text)
    out = ""
    for digits, letters, dot in re.findall(r"(\d+)|([^\d*]+)|(\*)", formula):
        if dot:
            out += "\\cdot "
        elif letters:
            out += "\\mathrm{" + letters + "}"
        else:  # a count after a symbol or bracket is a subscript; after the hydrate dot a coefficient
            out += f"_{{{digits}}}" if out and not out.endswith("\\cdot ") else digits
    if charge:
        size = abs(charge)
        out += "^{" + (str(size) if size > 1 else "") + ("+" if charge > 0 else "-") + "}"
    return (str(coef) if coef > 1 else "") + out + ("\\mathrm{" + state + "}" if keep_state and state else "")


def _side(terms: list[str]) -> tuple[Counter, int, list[tuple[str, str]]]:
    """Atoms and charge of one side, and its (species, mark) items; `^`/`v` mark the species before them."""
    total: Counter = Counter()
    charge = 0
    items: list[tuple[str, str]] = []
    for term in terms:
        words = term.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in MARKS):
            raise ChemError(f"bad term {term!r} (a species, optionally followed by ^ or v)")
        coef, formula, q, _ = parse_species(words[0])
        if formula != "e":
            for element, n in atoms(formula).items():
                total[element] += coef * n
        charge += coef * q
        items.append((words[0], words[1] if len(words) == 2 else ""))
    return total, charge, items


def reaction_latex(line: str, keep_state: bool = True) -> str:
    """Check the balance of `lhs ARROW rhs` and return its LaTeX; `ChemError` when unbalanced."""
    arrow = next((a for a in ("->[heat]", "<=>", "->") if f" {a} " in f" {line} "), None)
    if arrow is None:
        raise ChemError(f"no arrow (->, <=>, ->[heat]) in {line!r}")
    parts = [p.strip() for p in line.split(f" {arrow} ")]
    if len(parts) != 2 or not all(parts):
        raise ChemError(f"one arrow with spaces around it and species on both sides: {line!r}")
    (la, lq, litems), (ra, rq, ritems) = (_side(p.split(" + ")) for p in parts)
    if la != ra or lq != rq:
        diff = {e: ra[e] - la[e] for e in set(la) | set(ra) if ra[e] != la[e]}
        raise ChemError(f"unbalanced: atoms right-left {diff}, charge {lq} -> {rq}: {line!r}")

    def join(items: list[tuple[str, str]]) -> str:
        return "+".join(species_latex(s, keep_state) + (MARKS[m] if m else "") for s, m in items)

    return f"{join(litems)}{ARROWS[arrow]}{join(ritems)}"


def build_corpus(source: Path = SOURCE) -> tuple[list[str], Counter]:
    """All formulas of `source` (deduplicated, in order) and how many came from each section."""
    formulas: dict[str, None] = {}
    counts: Counter = Counter()
    section = None
    errors = []
    for lineno, raw in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]") and line[1:-1] in ("compounds", "ions", "reactions"):
            section = line[1:-1]
            continue
        try:
            if section == "reactions":
                items = [reaction_latex(line)]
                if any(s in line for s in STATES):
                    items.append(reaction_latex(line, keep_state=False))
            elif section in ("compounds", "ions"):
                items = [species_latex(line)]
            else:
                raise ChemError("item before any [compounds]/[ions]/[reactions] header")
        except ChemError as exc:
            errors.append(f"{source.name}:{lineno}: {exc}")
            continue
        for item in items:
            if item not in formulas:
                formulas[item] = None
                counts[section] += 1
    if errors:
        raise ChemError("\n".join(errors))
    return list(formulas), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="species and reactions list")
    parser.add_argument("--out", type=Path, required=True, help="corpus file to write (one formula a line)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the line order (default 0)")
    args = parser.parse_args(argv)
    try:
        formulas, counts = build_corpus(args.source)
    except ChemError as exc:
        print(exc, file=sys.stderr)
        return 1
    random.Random(args.seed).shuffle(formulas)  # so `texscribe data render --limit N` takes a mix
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(formulas) + "\n", encoding="utf-8")
    parts = ", ".join(f"{n} {name}" for name, n in counts.items())
    print(f"wrote {len(formulas)} formulas ({parts}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
