#!/usr/bin/env bash
# Session 14 probe: is shape hard because its codes move with the object's sub-cell offset?
# Two C2I-only runs from scratch, identical but for the data: 8,000 single-object class images with
# random offsets (data/shapes, the session-7 cache) against 8,000 with every object centred on a
# latent cell (make_aligned.py). Session 7's official-p_t row recipe: configs/train/shapes_c2i.yaml,
# p_t logit-normal -0.8 / 0.8, batch 16, lr 1e-3, 3,000 steps, seed 0; one thread each, side by side.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
T=checkpoints/grn-shapes/visual_tokenizer
[ -f outputs/shapes-backbone/config.json ] || python scripts/make_shapes_backbone.py --out outputs/shapes-backbone --seed 0
if [ ! -f data/token_cache_aligned/shapes-classes/token_cache.json ]; then
  python docs/results/session14/aligned/make_aligned.py data/shapes_aligned 8000
  grn cache-tokens classes data/shapes_aligned --tokenizer $T --out data/token_cache_aligned/shapes-classes --n 8000
fi
COMMON=(--config configs/train/shapes_c2i.yaml model.visual_tokenizer=$T run.progress=false
  "model.overrides={num_class_tokens: 18, pt_logit_mean: -0.8, pt_logit_std: 0.8}")
python scripts/train.py "${COMMON[@]}" run.output_dir=outputs/grn-c2i-random > outputs/grn-c2i-random.log 2>&1 &
python scripts/train.py "${COMMON[@]}" data.token_cache_dir=data/token_cache_aligned \
  run.output_dir=outputs/grn-c2i-aligned > outputs/grn-c2i-aligned.log 2>&1 &
wait
score() {
  for r in random aligned; do
    python scripts/evaluate_model.py --model outputs/grn-c2i-$r/final --num-t2i 0 --num-t2v 0 --num-chat 0 \
      --c2i-per-class 10 --num-steps 16 --guidance-scale 2.5 --temperature 1.0 --seed 0 --threads 2 \
      --out docs/results/session14/aligned/c2i_${r}_step$1.json
  done
}
score 3000
# then both resumed, at the same constant lr (as session 7's stride-8 row was), to 6,000 and 9,000 steps
for steps in 6000 9000; do
  python scripts/train.py "${COMMON[@]}" run.output_dir=outputs/grn-c2i-random --resume run.max_steps=$steps \
    >> outputs/grn-c2i-random.log 2>&1 &
  python scripts/train.py "${COMMON[@]}" data.token_cache_dir=data/token_cache_aligned \
    run.output_dir=outputs/grn-c2i-aligned --resume run.max_steps=$steps >> outputs/grn-c2i-aligned.log 2>&1 &
  wait
  score $steps
done
