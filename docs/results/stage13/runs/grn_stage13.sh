#!/usr/bin/env bash
# Stage 13 (session 12): stage 11 (the shipped weights) + 1,600 steps at batch 96 (two micro-batches of
# 48), fresh AdamW, the same per-task p_t law; lr 3e-4 after 100 warm-up steps, constant to step 1,200,
# then linear to 3e-5 at 1,600 (153,600 samples): stage 11's recipe again, with run seed 1 so the data
# order and corruption draws differ from stage 11's. Two threads, about 20 steps/min. It asks whether a
# second cycle of the recipe that made stage 11 better keeps paying (stage 12, batch 192 for 600 steps,
# did not: docs/results/stage12/). Resume with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-checkpoints/grn-shapes} model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  data.batch_size=${BATCH:-96} data.micro_batch_size=${MICRO:-48} run.output_dir=${RUN:-outputs/grn-shapes-s13} \
  run.max_steps=${STEPS:-1600} run.seed=${SEED:-1} optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-1200} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
