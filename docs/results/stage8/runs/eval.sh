#!/usr/bin/env bash
# Score a GRN export as the card does, at the shipped sampling settings (16 steps, CFG 2.5, T 1.05):
#   MODEL=/tmp/grn-s8 OUT=docs/results/stage8 SEEDS="0 5000" bash docs/results/stage8/runs/eval.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT"
for seed in ${SEEDS:-0 5000}; do
  chat=30; [ "$seed" = 0 ] || chat=0
  python scripts/evaluate_model.py --model "$MODEL" --out "$OUT/eval_seed${seed}${TAG:-}.json" --threads ${THREADS:-1} \
    --num-t2i ${NUM_T2I:-300} --num-t2v ${NUM_T2V:-48} --c2i-per-class ${C2I:-10} --num-chat $chat --seed $seed \
    --num-steps 16 --guidance-scale ${CFG:-2.5} --temperature ${TEMP:-1.05}
done
