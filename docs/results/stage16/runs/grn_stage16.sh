#!/usr/bin/env bash
# Stage 16 (session 13): a wider backbone. Stage 11 (the shipped weights) widened without changing its
# outputs (grn expand-width: hidden 192 -> 288, MLP 512 -> 768, 4 -> 6 heads of 48; 2.97M -> 6.47M
# parameters), then stage 13's recipe: 1,600 steps at batch 96 (two micro-batches of 48), fresh AdamW,
# the per-task p_t law, lr 3e-4 after 100 warm-up steps, constant to step 1,200, then linear to 3e-5
# at 1,600, run seed 1 (stage 13's data order and corruption draws). It asks whether capacity in
# width, which depth (session 6) did not give, moves the shape bound. Two threads, about 10 steps/min
# (1.9x stage 13's time per step); resumable in chunks with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
INIT=${INIT:-outputs/grn-wide-init}
date
if [ ! -f "$INIT/config.json" ]; then
  grn expand-width checkpoints/grn-shapes --out "$INIT" --hidden-size 288 --intermediate-size 768 \
    --num-heads 6 --num-kv-heads 6 --seed 0
fi
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=$INIT model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  data.batch_size=${BATCH:-96} data.micro_batch_size=${MICRO:-48} run.output_dir=${RUN:-outputs/grn-shapes-s16} \
  run.max_steps=${STEPS:-1600} run.seed=${SEED:-1} optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=${DECAY:-1200} optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
