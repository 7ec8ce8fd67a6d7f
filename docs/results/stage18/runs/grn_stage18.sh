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
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
INIT=${INIT:-/tmp/grn-s17}
[ -f $INIT/model.safetensors ] || { grn export-checkpoint outputs/grn-shapes-s17 --out $INIT --overwrite &&
  cp checkpoints/grn-shapes/generation_config.json $INIT/; }
INIT=$INIT SEED=2 STEPS=${STEPS:-4000} DECAY=3200 RUN=${RUN:-outputs/grn-shapes-s18} \
  bash docs/results/stage17/runs/grn_stage17.sh
