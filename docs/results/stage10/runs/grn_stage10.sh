#!/usr/bin/env bash
# Stage 10: stage 8 (the shipped weights) + 4,000 steps at three times the batch (48 instead of 16),
# the same per-task p_t law; lr 3e-4 constant to step 3,000, then linear to 3e-5 at 4,000.
# Seed 0, two threads. The lever: a larger batch lowers the gradient noise, for the shape bits that are a
# small part of every batch's loss. Resume with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=checkpoints/grn-shapes model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  data.batch_size=${BATCH:-48} run.output_dir=${RUN:-outputs/grn-shapes-s10} run.max_steps=4000 \
  optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear optim.decay_start=3000 optim.min_lr_ratio=0.1 \
  run.checkpoint_every=250 run.keep_checkpoints=3
date
