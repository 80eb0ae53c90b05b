#!/usr/bin/env bash
# Rebuild every dataset the shipped model was trained and scored on, from ../shared/data, on a fresh machine.
#
#   bash scripts/make_training_data.sh [WORK]      # WORK: where synth/ and print/ go (default: ../ beside
#                                                  # the checkout); CROHME/im2latex sets go to prepared/
#
# The same commands as docs/TRAINING_RUNS.md and docs/RENDERING.md, in one place and in dependency order.
# Every step skips a set whose report.md already exists, so a re-run after an interruption resumes.
# About 25 minutes on 2 quiet cores (2026-12-06: paper print 8.5 min, synthetic handwriting 6 min, school print
# 4 min; docs/TRAINING_RUNS.md, fourteenth session).
# Needs TeX (scripts/setup.sh installs it); without it the print renders fall back to matplotlib mathtext
# and are not the sets the model card describes.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(realpath -m "${1:-..}")"
SHARED=../shared/data
WORKERS="${WORKERS:-2}"
mkdir -p prepared "$WORK/synth" "$WORK/print"

step() {  # step OUT_DIR COMMAND...: run COMMAND unless OUT_DIR already holds a finished dataset
  local out="$1"; shift
  if [ -f "$out/report.md" ]; then echo "== $out: present, skipped"; return; fi
  echo "== $out"; local t0=$SECONDS
  "$@"
  echo "== $out: $((SECONDS - t0)) s"
}

# Real handwriting (CROHME 2019 train, 2014 test) and im2latex validation
step prepared/crohme_train texscribe data prepare "$SHARED/crohme/crohme_offline.zip:train" --out prepared/crohme_train
step prepared/crohme_2014 texscribe data prepare "$SHARED/crohme/crohme_offline.zip:2014" --out prepared/crohme_2014 \
  --vocab-from prepared/crohme_train
step prepared/crohme_inkml_train texscribe data prepare "$SHARED/crohme/crohme_inkml.zip:train" \
  --out prepared/crohme_inkml_train
step prepared/im2latex_val texscribe data prepare "$SHARED/im2latex/im2latex_val.zip:validate" --out prepared/im2latex_val

# The InkML train strokes drawn small with the usual pen (issue 17's small-writing bar), stored at 28 px
for h in 11 14 16 20; do
  step "$WORK/synth/crohme_inkml_train_h$h" texscribe data prepare "$SHARED/crohme/crohme_inkml.zip:train" \
    --stroke-height "$h" --ink-height 28 --out "$WORK/synth/crohme_inkml_train_h$h"
done

# Synthetic handwriting (docs/SYNTHETIC_HANDWRITING.md): composed expressions and sub-expressions
step "$WORK/synth/decomp_v1" texscribe data decompose-inkml --out "$WORK/synth/decomp_v1" --workers "$WORKERS" \
  --no-progress
step "$WORK/synth/hw_v1" texscribe data synth-handwriting --out "$WORK/synth/hw_v1" --count 100000 --seed 0 \
  --workers "$WORKERS" --bank "$WORK/synth/glyph_bank_v1.npz" --no-progress

# School print (docs/RENDERING.md, "The training set of the shipped model"); held_out/ is scored, never trained
step "$WORK/print/printed_render" texscribe data render --corpus k12 crohme synthetic --out "$WORK/print/printed_render" \
  --fonts cm lm times palatino sans --sizes 10 11 12 --dpi 200 250 300 --degrade 0.3 --display 0.3 \
  --variants 2 --held-out-fraction 0.02 --drop-multiline --max-label-len 150 --workers "$WORKERS"

# Paper-style print, rendered, then stored at the base preset's 28 px symbols (single-line and multi-line apart)
step "$WORK/print/paper_display_v1" texscribe data render --corpus "$SHARED/formulas/paper_display.lst" \
  --out "$WORK/print/paper_display_v1" --fonts cm cm cm lm times palatino sans --sizes 10 11 12 \
  --dpi 100 120 150 200 --display 0.5 --degrade 0.15 --workers "$WORKERS" --seed 1
step "$WORK/print/paper_display_v1_ink28c" texscribe data prepare "$WORK/print/paper_display_v1/manifest.tsv" \
  --ink-height 28 --max-label-len 150 --out "$WORK/print/paper_display_v1_ink28c"
step "$WORK/print/paper_multiline_v1_ink28c" texscribe data prepare "$WORK/print/paper_display_v1/manifest.tsv" \
  --multiline only --ink-height 28 --max-label-len 150 --out "$WORK/print/paper_multiline_v1_ink28c"

# The real im2latex training part, stored at 28 px symbols
step prepared/im2latex_train_part texscribe data prepare "$SHARED/im2latex/im2latex_train_part.zip" \
  --out prepared/im2latex_train_part
step "$WORK/print/im2latex_train_part_ink28c" texscribe data prepare prepared/im2latex_train_part/manifest.tsv \
  --ink-height 28 --max-label-len 150 --out "$WORK/print/im2latex_train_part_ink28c"

# The model card's "printed held-out, unseen formulas" (916 images): held-out print no training set holds
if [ ! -f "$WORK/print/printed_held_out_unseen/manifest.tsv" ]; then
  python scripts/held_out_unseen.py "$WORK/print/printed_render/held_out" --out "$WORK/print/printed_held_out_unseen" \
    --old-hw-v1-vocab prepared/crohme_train/vocab.json --train prepared/crohme_train prepared/crohme_inkml_train \
    "$WORK"/synth/{hw_v1,decomp_v1,crohme_inkml_train_h11,crohme_inkml_train_h14,crohme_inkml_train_h16} \
    "$WORK"/synth/crohme_inkml_train_h20 "$WORK"/print/{printed_render,paper_display_v1_ink28c} \
    "$WORK"/print/{im2latex_train_part_ink28c,paper_multiline_v1_ink28c}
fi

echo "all sets present under prepared/ and $WORK/{synth,print}"
