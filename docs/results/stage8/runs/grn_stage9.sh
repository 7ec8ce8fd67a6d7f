#!/usr/bin/env bash
# Stage 9: stage 8 (the shipped weights) + 4,000 steps with the same per-task p_t law at a lower lr:
# 1e-4 constant to step 2,000, then linear to 1e-5 at 4,000. Seed 0, two threads.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=checkpoints/grn-shapes model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  run.output_dir=outputs/grn-shapes-s9 run.max_steps=4000 optim.lr=1e-4 optim.warmup_steps=100 \
  optim.lr_schedule=linear optim.decay_start=2000 optim.min_lr_ratio=0.1 run.checkpoint_every=250 run.keep_checkpoints=3
date
