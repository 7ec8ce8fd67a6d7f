#!/usr/bin/env bash
# T2I re-scored with 75 prompts per GenEval task (300 images; the card's draw has 17 single-object
# prompts of 300), card sampler settings, seeds 0 and 5000, for the shipped model and the stages
# that were compared with it. Models: checkpoints/grn-shapes and the exports in /tmp/grn-sNN
# (made by docs/results/stage10/runs/post.sh from outputs/grn-shapes-sNN).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=docs/results/session13/t2i_balanced
SAMPLER="--num-steps 16 --guidance-scale 2.5 --temperature 1.05 --threads ${THREADS:-2}"
for name in ${NAMES:-stage11 stage15 stage13}; do
  model=/tmp/grn-s${name#stage}; [ "$name" = stage11 ] && model=checkpoints/grn-shapes
  for s in ${SEEDS:-0 5000}; do
    python scripts/evaluate_model.py --model "$model" $SAMPLER --t2i-per-task 75 --num-t2v 0 --c2i-per-class 0 \
      --num-chat 0 --seed $s --out "$OUT/${name}_seed$s.json"
  done
done
