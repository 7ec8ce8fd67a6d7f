#!/usr/bin/env bash
# Stage 14 (session 12): is text-to-video bound by its share of the data? INIT's weights + 700 steps at
# batch 96 (two micro-batches of 48) with the moving-shapes weight doubled (2.0 -> 4.0: video goes from
# 20 % to 33 % of the steps; every other source and the per-task p_t law as in stage 11), fresh AdamW,
# lr 3e-4 after 100 warm-up steps, constant to step 450, then linear to 3e-5 at 700 (67,200 samples),
# run seed 2. Two threads, about 22 steps/min. INIT: the better of stage 11 (checkpoints/grn-shapes)
# and stage 13 exported. Resume with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
SOURCES="[{kind: images, path: data/shapes, name: shapes, size: 64, weight: 4.0},
 {kind: videos, path: data/moving_shapes, name: moving-shapes, size: 64, num_frames: 9, weight: ${VIDEO_WEIGHT:-4.0}},
 {kind: classes, path: data/shapes, name: shapes-classes, size: 64, weight: 1.5},
 {kind: conversations, path: data/shapes_chat, name: shapes-chat, size: 64, weight: 2.5}]"
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=${INIT:-checkpoints/grn-shapes} model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" "data.sources=$SOURCES" \
  data.batch_size=${BATCH:-96} data.micro_batch_size=${MICRO:-48} run.output_dir=${RUN:-outputs/grn-shapes-s14} \
  run.max_steps=${STEPS:-700} run.seed=${SEED:-2} optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-450} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
