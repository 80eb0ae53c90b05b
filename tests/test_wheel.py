"""The wheel carries its models: `python -m build` makes a wheel with the shipped weights, both model cards
and the web page (about 12 s).

Installing that wheel in a clean venv and reading the bundled examples offline takes 1.5-4 minutes on
2 cores (torch is 750 MB to unpack), so it is `python scripts/check_wheel.py`, not a CI test; both use
the same functions.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_wheel.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_wheel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_built_wheel_holds_the_models_their_cards_and_the_web_page(tmp_path):
    pytest.importorskip("build", reason="the `build` package is not installed (pip install build)")
    check_wheel = load_script()
    wheel = check_wheel.build_wheel(tmp_path)
    check_wheel.check_contents(wheel)  # raises CheckFailed naming what is missing
    assert wheel.name.endswith("-py3-none-any.whl")  # pure Python: one wheel for every platform
