#!/usr/bin/env bash
# Stage 15 (session 13): stage 13's run (docs/results/stage13/runs/grn_stage13.sh) with one change, the
# slot loss weighted by HBQ round, visual_round_weights [1, 1, 0.5, 0.25] (normalised by their mean, so
# rounds 1-2 get 1.45x and rounds 3-4 0.73x / 0.36x of Eq. 7's gradient). Everything else is stage 13's:
# stage 11 (the shipped weights) + 1,600 steps at batch 96 (two micro-batches of 48), fresh AdamW, the
# per-task p_t law, lr 3e-4 after 100 warm-up steps, constant to step 1,200, then linear to 3e-5 at
# 1,600, run seed 1 (the same data order and corruption draws as stage 13). It asks whether spending
# the gradient on the rounds where shape lives (true codes with rounds 3-4 at random still pass the T2I
# checker 0.905 of the time) moves the shape bound. Two threads, about 20 steps/min. Resume with
# RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-checkpoints/grn-shapes} model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}, visual_round_weights: [1, 1, 0.5, 0.25]}" \
  data.batch_size=${BATCH:-96} data.micro_batch_size=${MICRO:-48} run.output_dir=${RUN:-outputs/grn-shapes-s15} \
  run.max_steps=${STEPS:-1600} run.seed=${SEED:-1} optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-1200} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
