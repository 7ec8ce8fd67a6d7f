#!/usr/bin/env bash
# Stage 12 (session 11): stage 11's weights + 600 steps at batch 192 (four micro-batches of 48: one
# forward over 96 or more samples runs at about half the tokens/s of 48 on this CPU), fresh AdamW, the
# same per-task p_t law; lr 3e-4 after 50 warm-up steps, constant to step 350, then linear to 3e-5 at
# 600 (115,200 samples). Seed 0, two threads, about 12 steps/min. It asks whether doubling the batch
# again keeps moving shape (stage 10, batch 48: C2I shape 0.49 -> 0.59; stage 11, batch 96: see
# docs/RESULTS.md, session 11). INIT: stage 11 exported (`grn export-checkpoint outputs/grn-shapes-s11
# --out /tmp/grn-s11`, as docs/results/stage10/runs/post.sh does). Resume with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-/tmp/grn-s11} model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  data.batch_size=${BATCH:-192} data.micro_batch_size=${MICRO:-48} run.output_dir=${RUN:-outputs/grn-shapes-s12} \
  run.max_steps=${STEPS:-600} optim.lr=3e-4 optim.warmup_steps=50 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-350} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
