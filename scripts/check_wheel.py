"""Check that the wheel carries its models: build it, install it in a clean venv, read the examples offline.

    python scripts/check_wheel.py [--out DIR] [--keep]

1. `python -m build` (sdist, then the wheel from the sdist, so MANIFEST.in is checked too) into DIR.
2. The wheel must hold the shipped weights, both model cards and the web page (tests/test_wheel.py runs
   steps 1-2 in CI).
3. A venv made without --system-site-packages (so nothing of this checkout, installed editable here,
   can be imported in it), set up with the README's lines: `pip install torch==2.13.0`, then
   `pip install WHEEL`. pip fetches only the third-party dependencies (torch from the machine's wheel
   file or cache: no GB download, so there is no reason to borrow this environment's torch); texscribe
   comes from the wheel file.
4. From a folder outside the checkout, with every socket connection refused (a sitecustomize in the
   venv), the installed `texscribe predict` must read examples/*.png as expected.

Prints each step's time and the wheel's size; exit status 0 when every check passes. Takes 1.5-4 min
on 2 cores (torch alone is 750 MB to unpack), so it is a script, not a CI test. The venv (≈1.3 GB) is
deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"x_squared_plus_1.png": "x^{2}+1", "y_eq_4x.png": "y=4x"}  # examples/*.png, read by default.pt
TORCH = "torch==2.13.0"  # the README's pin (CPU build)

# run inside the venv: where texscribe comes from, that its data files are there, that sockets are refused
PROBE = """\
import socket
from importlib import resources

import texscribe

files = resources.files("texscribe")
for name in ("weights/default.pt", "weights/MODEL_CARD.md", "weights/DIGITS_MODEL_CARD.md",
             "server/static/index.html", "server/static/vendor/katex/katex.min.js"):
    assert files.joinpath(name).is_file(), name
try:
    socket.create_connection(("127.0.0.1", 9))
except OSError as exc:
    assert "blocked" in str(exc), exc
    print(texscribe.__file__, "blocked")
"""

NO_NETWORK = """\
import socket


def _refuse(*args, **kwargs):
    raise OSError("network use blocked by scripts/check_wheel.py")


socket.socket.connect = socket.socket.connect_ex = _refuse
socket.create_connection = socket.getaddrinfo = _refuse
"""


class CheckFailed(AssertionError):
    pass


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; raise CheckFailed with its output if it fails; print how long it took."""
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    shown = " ".join(c.split("\n")[0] if "\n" in c else Path(c).name if "/" in c else c for c in cmd)[:100]
    if proc.returncode != 0:
        raise CheckFailed(f"{shown} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    print(f"{time.monotonic() - start:6.1f} s  {shown}", flush=True)
    return proc


def build_wheel(out: Path) -> Path:
    """`python -m build` into `out`; returns the wheel's path."""
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], timeout=600)
    (wheel,) = out.glob("texscribe-*.whl")
    print(f"wheel: {wheel.name}, {wheel.stat().st_size:,} bytes ({wheel.stat().st_size / 1e6:.2f} MB)")
    return wheel


def _package_files(folder: str) -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "texscribe" / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def check_contents(wheel: Path) -> None:
    """The wheel holds every file of weights/ and server/static/, and the formula model's card."""
    names = set(zipfile.ZipFile(wheel).namelist())
    must = _package_files("weights") | _package_files("server/static")
    must |= {
        "texscribe/weights/MODEL_CARD.md",
        "texscribe/weights/model_card/accuracy_by_length.png",
    }  # from docs/
    if not {"texscribe/weights/default.pt", "texscribe/weights/digits.pt"} <= must:
        raise CheckFailed("the checkout has no shipped weights in texscribe/weights")
    if must - names:
        raise CheckFailed(f"missing from the wheel: {sorted(must - names)}")
    if stray := sorted(n for n in names if not n.startswith(("texscribe/", "texscribe-"))):
        raise CheckFailed(f"files outside the package in the wheel: {stray}")
    if wheel.stat().st_size > 20e6:
        raise CheckFailed(f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB: more than the models explain")


def install_and_predict(wheel: Path, work: Path) -> None:
    """Clean venv in `work`, installed as the README says; predict from the installed package, offline."""
    venv = work / "venv"
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    # the README's install lines: torch pinned first, then the wheel (pip looks up only its dependencies)
    run([py, "-m", "pip", "install", "-q", TORCH], timeout=900, env=env)
    run([py, "-m", "pip", "install", "-q", str(wheel)], timeout=900, env=env)
    site = run([py, "-c", "import site; print(site.getsitepackages()[0])"], timeout=60, env=env)
    Path(site.stdout.strip(), "sitecustomize.py").write_text(NO_NETWORK)

    elsewhere = work / "elsewhere"  # outside the checkout, so ./texscribe cannot be imported
    elsewhere.mkdir()
    for name in EXAMPLES:
        shutil.copy(REPO / "examples" / name, elsewhere / name)
    package, blocked = run([py, "-c", PROBE], timeout=300, env=env, cwd=elsewhere).stdout.split()
    if not Path(package).is_relative_to(venv):
        raise CheckFailed(f"texscribe was imported from {package}, not from the venv")
    if blocked != "blocked":
        raise CheckFailed("sockets were not blocked in the venv")
    # the README's first command, through the installed console script
    cmd = [str(venv / "bin" / "texscribe"), "predict", "--no-progress", *EXAMPLES]
    out = run(cmd, timeout=300, env=env, cwd=elsewhere).stdout
    print(out, end="")
    got = dict(line.split("\t") for line in out.strip().splitlines())
    if got != EXAMPLES:
        raise CheckFailed(f"predicted {got}, expected {EXAMPLES}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="folder for the wheel, the venv and the scratch files")
    ap.add_argument("--keep", action="store_true", help="keep the venv")
    args = ap.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="texscribe-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        wheel = build_wheel(work / "dist")
        check_contents(wheel)
        install_and_predict(wheel, work)
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work / "venv", ignore_errors=True)
    print(
        f"OK in {time.monotonic() - start:.0f} s: the wheel installs in a clean venv and reads the examples offline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
