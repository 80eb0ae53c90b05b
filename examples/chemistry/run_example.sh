#!/usr/bin/env bash
# The chemistry fine-tuning example end to end: corpus -> rendered images -> finetune -> report.
#   examples/chemistry/run_example.sh [MODEL] [PREPARED_ROOT] [OUT]
# MODEL: default (the shipped model) or a model file; PREPARED_ROOT holds crohme_train, crohme_2014 and
# im2latex_val (`texscribe data prepare`, see README); OUT: the fine-tuning run folder.
# Extra settings through the environment: VARIANTS (6), EPOCHS (2), REPLAY (0.7), LR (2e-4), LIMIT (1000),
# EXTRA (more finetune flags).
set -euo pipefail
MODEL=${1:-default}
PREPARED=${2:-prepared}
OUT=${3:-runs/ft-chemistry}
HERE=$(cd "$(dirname "$0")" && pwd)

python "$HERE/make_corpus.py" --out "$OUT/chemistry_corpus.txt"
texscribe data render --corpus "$OUT/chemistry_corpus.txt" --out "$OUT/chemistry" --variants "${VARIANTS:-6}" \
    --held-out-fraction 0.2 --fonts cm lm times palatino sans --sizes 10 12 --dpi 250 300 350 --degrade 0.3 \
    --no-progress
# shellcheck disable=SC2086
texscribe finetune --from "$MODEL" --data "$OUT/chemistry" --val "$OUT/chemistry/held_out" \
    --replay "$PREPARED/crohme_train" --replay-fraction "${REPLAY:-0.7}" --lr "${LR:-2e-4}" --epochs "${EPOCHS:-2}" \
    --eval "$PREPARED/crohme_2014" --eval "$PREPARED/im2latex_val" --limit "${LIMIT:-1000}" \
    --out "$OUT/finetune" --no-progress ${EXTRA:-}
cat "$OUT/finetune/finetune_report.md"
