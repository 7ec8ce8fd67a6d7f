#!/usr/bin/env bash
# Stage 11 (started at the end of session 10, to be resumed): stage 10 (the shipped weights) + 3,000 steps
# at batch 96 (twice stage 10's), the same per-task p_t law; lr 3e-4 constant to step 2,000, then linear
# to 3e-5 at 3,000. Seed 0, two threads, about 14 steps/min (3.5 h in all; STEPS=2000 DECAY=1500 on a
# resume shortens it: the lr schedule is read from the command line on every resume). It tests whether a still larger batch keeps
# moving shape (stage 10: batch 48 raised C2I shape accuracy 0.49 -> 0.59).
# Session 11 resumed it from step 400 with STEPS=1600 DECAY=1200 MICRO=48: the same batch of 96 in two
# micro-batches of 48 (gradient accumulation), because one forward over 96 ran at 2,900 tokens/s against
# 4,500 for 48 on this CPU (the same samples per step; the loss is now the mean of the two halves' means).
# Resume with RESUME=--resume: the model is built from init_from, then the run's own checkpoint (weights,
# optimizer, data stream) is loaded over it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-checkpoints/grn-shapes} model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  data.batch_size=${BATCH:-96} data.micro_batch_size=${MICRO:-null} run.output_dir=${RUN:-outputs/grn-shapes-s11} run.max_steps=${STEPS:-3000} \
  optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear optim.decay_start=${DECAY:-2000} optim.min_lr_ratio=0.1 \
  run.checkpoint_every=100 run.keep_checkpoints=3
date
