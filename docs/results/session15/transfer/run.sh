#!/usr/bin/env bash
# Session 15: does a GRN that learned free placement convert quickly once its targets are cell-aligned?
# Session 14's random-offset C2I probe model (docs/results/session14/aligned/, outputs/grn-c2i-random,
# 9,000 steps: C2I 0.194) trained on for 3,000 more steps on the cell-centred class images (fresh AdamW,
# the same recipe: configs/train/shapes_c2i.yaml, p_t -0.8 / 0.8, batch 16, lr 1e-3, seed 0), scored
# at 1,500 and 3,000 steps as the probe was. The from-scratch cell-centred run reached 0.533 at 9,000.
# TO=random runs the control: the same restart (fresh AdamW, warm-up) on the random-offset images.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
TO=${TO:-aligned} T=checkpoints/grn-shapes/visual_tokenizer OUT=docs/results/session15/transfer
RUN=outputs/grn-c2i-random2$TO CACHE=data/token_cache_aligned; [ "$TO" = random ] && CACHE=data/token_cache
COMMON=(--config configs/train/shapes_c2i.yaml model.visual_tokenizer=$T run.progress=false
  model.init_from=outputs/grn-c2i-random/final model.backbone=null data.token_cache_dir=$CACHE
  "model.overrides={num_class_tokens: 18, pt_logit_mean: -0.8, pt_logit_std: 0.8}" run.output_dir=$RUN)
for steps in 1500 3000; do
  python scripts/train.py "${COMMON[@]}" run.max_steps=$steps $([ $steps = 1500 ] || echo --resume) >> $RUN.log 2>&1
  python scripts/evaluate_model.py --model $RUN/final --num-t2i 0 --num-t2v 0 --num-chat 0 \
    --c2i-per-class 10 --num-steps 16 --guidance-scale 2.5 --temperature 1.0 --seed 0 --threads ${THREADS:-1} \
    --out $OUT/c2i_random2${TO}_step$steps.json
done
