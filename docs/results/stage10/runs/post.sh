#!/usr/bin/env bash
# Export stage 10 with the shipped generation config and score it as the card does: seed 0 with the
# ceilings and the condition gap (the card's full command), seed 5000 without chat (eval.sh).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
RUN=${RUN:-outputs/grn-shapes-s10} MODEL=${MODEL:-/tmp/grn-s10} OUT=${OUT:-docs/results/stage10}
grn export-checkpoint "$RUN" --out "$MODEL" --overwrite
cp checkpoints/grn-shapes/generation_config.json "$MODEL/"
python scripts/evaluate_model.py --model "$MODEL" --out "$OUT/eval_seed0.json" --threads ${THREADS:-2} \
  --num-t2i 300 --num-t2v 48 --c2i-per-class 10 --num-chat 30 --ceiling-images 96 --ceiling-videos 40 \
  --condition-gap-images 96
THREADS=${THREADS:-2} MODEL=$MODEL OUT=$OUT SEEDS=5000 bash docs/results/stage8/runs/eval.sh
