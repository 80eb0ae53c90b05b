"""Issue 16's structural bars, kept: no import cycle between package modules, no function over 80 lines
without a stated reason (`scripts/check_structure.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_structure.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles() -> None:
    checker = _checker()
    assert checker.cycles(checker.import_graph()) == []


def test_cycle_detection_finds_a_planted_cycle() -> None:
    checker = _checker()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert checker.cycles(graph) == [["a", "b", "c"]]


def test_no_unexplained_long_functions() -> None:
    assert _checker().long_functions(80) == []
