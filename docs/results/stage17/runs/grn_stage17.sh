#!/usr/bin/env bash
# Stage 17 (session 15): stage 13's recipe (stage 11, the shipped weights, + 1,600 steps at batch 96,
# fresh AdamW, lr 3e-4 after 100 warm-up steps, linear from step 1,200 to 3e-5 at 1,600, run seed 1),
# with one change: every image the model learns to *draw* has its objects centred on the stride-8
# latent cells (grn make-data ... --cell 8): the shapes images (T2I) and class images (C2I), and the
# images drawn in shapes-chat; a user's image in chat keeps free placement, and moving-shapes is
# unchanged. Same tokenizer, same data sizes and the same seeds as stage 13, so stage 13 is its
# control. Session 14's from-scratch C2I probe (docs/results/session14/aligned/) is why.
# Two threads, about 20 steps/min. Resume with RESUME=--resume. INIT, SEED, STEPS, DECAY and RUN
# default to stage 17's values; stage 18 (docs/results/stage18/runs/) runs this script with its own.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
T=checkpoints/grn-shapes/visual_tokenizer C=data/token_cache_cell8
if [ ! -f $C/shapes-chat/token_cache.json ]; then
  grn make-data shapes --out data/shapes_cell8 --n 20000 --seed 0 --test-fraction 0.05 --cell 8 --quiet
  grn make-data shapes-chat --out data/shapes_chat_cell8 --n 8000 --seed 0 --test-fraction 0.05 --cell 8 --quiet
  grn cache-tokens images data/shapes_cell8 --tokenizer $T --out $C/shapes --n 8000
  grn cache-tokens classes data/shapes_cell8 --tokenizer $T --out $C/shapes-classes --n 8000
  grn cache-tokens conversations data/shapes_chat_cell8 --tokenizer $T --out $C/shapes-chat --n 3000
  ln -sfn ../token_cache/moving-shapes $C/moving-shapes  # unchanged (the card's cache)
fi
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-checkpoints/grn-shapes} model.backbone=null model.visual_tokenizer=$T \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  "data.sources=[{kind: images, path: data/shapes_cell8, name: shapes, size: 64, weight: 4.0},
    {kind: videos, path: data/moving_shapes, name: moving-shapes, size: 64, num_frames: 9, weight: 2.0},
    {kind: classes, path: data/shapes_cell8, name: shapes-classes, size: 64, weight: 1.5},
    {kind: conversations, path: data/shapes_chat_cell8, name: shapes-chat, size: 64, weight: 2.5}]" \
  data.token_cache_dir=$C data.batch_size=96 data.micro_batch_size=48 run.output_dir=${RUN:-outputs/grn-shapes-s17} \
  run.max_steps=${STEPS:-1600} run.seed=${SEED:-1} optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-1200} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
