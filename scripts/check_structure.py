"""Structure checks for the package: import cycles between its modules, and over-long functions.

Why: "one home per concept" decays quietly. A module that imports another which imports it back (even
inside a function, to dodge the cycle at import time) means the two share a concept that belongs in
one of them or in a third; a function of more than ~80 lines usually does several jobs. Both are
cheap to detect from the source, so `tests/test_structure.py` runs this on every CI run.

    python scripts/check_structure.py [--max-lines 80]

Prints every cycle (as a module path) and every function longer than the limit whose docstring does
not give a reason (a line starting with "Long because"); exits 1 when there is either.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "texscribe"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
LONG_REASON = "Long because"


def module_name(path: Path) -> str:
    """`texscribe/data/prepare.py` -> `texscribe.data.prepare`; a package's `__init__` is the package."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(tree: ast.AST, this: str, is_package: bool, known: set[str]) -> set[str]:
    """Package modules imported anywhere in `tree` (function bodies too), `if TYPE_CHECKING:` blocks aside."""
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = this.split(".") if is_package else this.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            # `from texscribe.data import prepare` names a module; `from texscribe.images import x` a symbol
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != this and name != PACKAGE:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    known = {module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for f in files:
        name = module_name(f)
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        deps = _imported_modules(tree, name, f.name == "__init__.py", known)
        # a package's modules importing their own package's __init__ (re-exports) is not a design cycle
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_functions(max_lines: int) -> list[tuple[str, int, str, int]]:
    """(file, line, qualified name, length) of functions longer than `max_lines` without a stated reason."""
    out = []
    for f in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        length = child.end_lineno - child.lineno + 1
                        doc = ast.get_docstring(child) or ""
                        if length > max_lines and LONG_REASON not in doc:
                            out.append((str(f.relative_to(ROOT.parent)), child.lineno, name, length))
                    stack.append((child, name + "."))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-lines", type=int, default=80)
    args = parser.parse_args(argv)
    bad = 0
    for cycle in cycles(import_graph()):
        print("import cycle: " + " <-> ".join(cycle))
        bad += 1
    for path, line, name, length in long_functions(args.max_lines):
        print(
            f"long function: {path}:{line} {name} ({length} lines; say why in a '{LONG_REASON} ...' docstring line)"
        )
        bad += 1
    print(f"{bad} problem(s)" if bad else "structure OK: no import cycles, no unexplained long functions")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
