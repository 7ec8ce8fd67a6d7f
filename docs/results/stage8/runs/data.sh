#!/usr/bin/env bash
# Rebuild the (gitignored) training data of the shipped model, as in its MODEL_CARD; the token caches
# use the shipped visual tokenizer (its encoder is the run's, bit-identical: only the decoder was tuned).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
date
grn make-data shapes --out data/shapes --n 20000 --seed 0 --test-fraction 0.05
grn make-data moving-shapes --out data/moving_shapes --n 2000 --seed 0 --test-fraction 0.05
grn make-data shapes-chat --out data/shapes_chat --n 8000 --seed 0 --test-fraction 0.05
date
T=checkpoints/grn-shapes/visual_tokenizer
grn cache-tokens images data/shapes --tokenizer $T --out data/token_cache/shapes --n 8000
grn cache-tokens conversations data/shapes_chat --tokenizer $T --out data/token_cache/shapes-chat --n 3000
grn cache-tokens videos data/moving_shapes --tokenizer $T --out data/token_cache/moving-shapes --n 1000
grn cache-tokens classes data/shapes --tokenizer $T --out data/token_cache/shapes-classes --n 8000
date
