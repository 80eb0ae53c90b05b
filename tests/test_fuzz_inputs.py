"""A few hundred of `benchmarks/fuzz_inputs.py`'s hostile inputs through every surface (issue 19): the
predict and digits CLIs, data prepare, the Python API and the server on loopback, with the shipped model.
None may end in a traceback, a hang, a confident empty answer, or go unreported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "benchmarks" / "fuzz_inputs.py"
BAD = ("traceback", "hang", "confident empty", "unreported")


@pytest.mark.slow
def test_hostile_inputs_through_every_surface(tmp_path):
    pytest.importorskip("uvicorn")  # the server surface runs `texscribe serve`
    out = tmp_path / "fuzz.json"
    cmd = [
        sys.executable,
        str(BENCHMARK),
        "--n",
        "300",
        "--seed",
        "0",
        "--json",
        str(out),
        "--keep",
        str(tmp_path / "in"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.is_file(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert set(result["surfaces"]) == {"predict", "api", "server", "digits", "prepare"}
    assert sum(s["inputs"] for s in result["surfaces"].values()) == 300
    bad = {name: {k: s[k] for k in BAD if s[k]} for name, s in result["surfaces"].items()}
    assert not any(bad.values()), proc.stdout
    for name, counts in result["surfaces"].items():  # every input got an answer of some kind
        assert counts["handled"] + counts["clean error"] == counts["inputs"], name
    assert proc.returncode == 0, proc.stdout + proc.stderr
