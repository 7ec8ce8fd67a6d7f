#!/usr/bin/env bash
# Session 15: the teacher-forced condition gap (how much the loss rises when the prompt's / class's
# shape or colour is swapped) on 96 held-out test scenes drawn with --cell 8, i.e. on the layout
# stage 17 was trained to draw, for the shipped model, stage 13 (control) and stage 17.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=docs/results/session15/condition_gap_cell8
for name in ${NAMES:-stage11 stage13 stage17}; do
  model=/tmp/grn-s${name#stage}; [ "$name" = stage11 ] && model=checkpoints/grn-shapes
  python scripts/evaluate_model.py --model "$model" --condition-gap-images 96 --condition-gap-cell 8 \
    --num-t2i 0 --num-t2v 0 --c2i-per-class 0 --num-chat 0 --threads ${THREADS:-1} --out "$OUT/$name.json"
done
