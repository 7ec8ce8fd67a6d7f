#!/usr/bin/env bash
# Stage 18 (sessions 15-16): stage 17 (exported to /tmp/grn-s17 by docs/results/stage10/runs/post.sh)
# trained on with the same cell-aligned data, fresh AdamW, for a longer cycle: 4,000 steps at batch 96,
# lr 3e-4 after 100 warm-up steps, constant to step 3,200, then linear to 3e-5 at 4,000; run seed 2.
# Stage 17 moved the drawn objects only part of the way onto the cells in 1,600 steps (its C2I
# samples' mean offset from a cell centre is 0.98 px against the shipped model's 1.89 and 0.06 for a
# cell-aligned render; docs/results/session15/grid_offsets_c2i180.json), so this asks what a longer
# cycle buys.
# Two threads, about 20 steps/min (about 3.3 h in all). Resume with RESUME=--resume.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
T=checkpoints/grn-shapes/visual_tokenizer C=data/token_cache_cell8 INIT=${INIT:-/tmp/grn-s17}
[ -f $C/shapes-chat/token_cache.json ] || { echo "make the cell-8 caches first: docs/results/stage17/runs/grn_stage17.sh" >&2; exit 2; }
[ -f $INIT/model.safetensors ] || RUN=outputs/grn-shapes-s17 MODEL=$INIT bash -c \
  'grn export-checkpoint "$RUN" --out "$MODEL" --overwrite && cp checkpoints/grn-shapes/generation_config.json "$MODEL/"'
date
python scripts/train.py --config configs/train/shapes.yaml ${RESUME:-} run.progress=false \
  model.init_from=$INIT model.backbone=null model.visual_tokenizer=$T \
  "model.overrides={num_class_tokens: 18, pt_logit_by_task: {c2i: [-0.8, 0.8]}}" \
  "data.sources=[{kind: images, path: data/shapes_cell8, name: shapes, size: 64, weight: 4.0},
    {kind: videos, path: data/moving_shapes, name: moving-shapes, size: 64, num_frames: 9, weight: 2.0},
    {kind: classes, path: data/shapes_cell8, name: shapes-classes, size: 64, weight: 1.5},
    {kind: conversations, path: data/shapes_chat_cell8, name: shapes-chat, size: 64, weight: 2.5}]" \
  data.token_cache_dir=$C data.batch_size=96 data.micro_batch_size=48 run.output_dir=${RUN:-outputs/grn-shapes-s18} \
  run.max_steps=${STEPS:-4000} run.seed=2 optim.lr=3e-4 optim.warmup_steps=100 optim.lr_schedule=linear \
  optim.decay_start=3200 optim.min_lr_ratio=0.1 run.checkpoint_every=50 run.keep_checkpoints=3
date
