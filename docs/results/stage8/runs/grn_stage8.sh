#!/usr/bin/env bash
# Stage 8: the shipped weights fine-tuned with a per-task p_t law (C2I -0.8 / 0.8, T2I / T2V / chat the
# shipped -1.3 / 1.3): stage 7's setup but for the per-task law. lr 3e-4 constant to step 4,500, then
# linear decay to 3e-5 at step 6,000 (stage 7's schedule). Seed 0, two threads.
# The control (one law, the shipped -1.3 / 1.3, for every task): CONTROL=1 RUN=outputs/grn-shapes-s8-control
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
EXTRA_OVERRIDES=", pt_logit_by_task: {c2i: [-0.8, 0.8]}"
[ "${CONTROL:-0}" = 1 ] && EXTRA_OVERRIDES=""
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=checkpoints/grn-shapes model.backbone=null \
  model.visual_tokenizer=checkpoints/grn-shapes/visual_tokenizer \
  "model.overrides={num_class_tokens: 18$EXTRA_OVERRIDES}" \
  run.output_dir=${RUN:-outputs/grn-shapes-s8} run.max_steps=${MAX_STEPS:-6000} optim.lr=3e-4 optim.warmup_steps=100 \
  optim.lr_schedule=linear optim.decay_start=4500 optim.min_lr_ratio=0.1 run.checkpoint_every=250 run.keep_checkpoints=3
date
