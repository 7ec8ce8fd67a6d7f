#!/usr/bin/env bash
# Score a run as stage 11 was (docs/results/stage10/runs/post.sh: seed 0 full, seed 5000 without chat),
# plus the extra draws (T2V on 96 clips at seed 10000; chat on 60 conversations at seed 5000) and,
# since session 12, image-to-video from the true first frame (48 clips, seeds 0 and 5000).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
RUN=${RUN:?} MODEL=${MODEL:?} OUT=${OUT:?} NAME=${NAME:?}
RUN=$RUN MODEL=$MODEL OUT=$OUT bash docs/results/stage10/runs/post.sh
SAMPLER="--num-steps 16 --guidance-scale 2.5 --temperature 1.05 --threads ${THREADS:-2}"
python scripts/evaluate_model.py --model "$MODEL" $SAMPLER --num-t2i 0 --num-t2v 96 --c2i-per-class 0 --num-chat 0 \
  --seed 10000 --out "$OUT/t2v96_seed10000_$NAME.json"
python scripts/evaluate_model.py --model "$MODEL" $SAMPLER --num-t2i 0 --num-t2v 0 --c2i-per-class 0 --num-chat 60 \
  --seed 5000 --out "$OUT/chat60_seed5000_$NAME.json"
for s in 0 5000; do
  python scripts/evaluate_model.py --model "$MODEL" $SAMPLER --num-t2i 0 --num-t2v 0 --num-i2v 48 --c2i-per-class 0 \
    --num-chat 0 --seed $s --out "$OUT/i2v48_seed${s}_$NAME.json"
done
