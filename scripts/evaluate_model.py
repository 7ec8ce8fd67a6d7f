"""Score a GRN model on the held-out shapes prompts with every checker (``unified_grn.eval.suite``).

python scripts/evaluate_model.py --model checkpoints/grn-shapes --out outputs/eval.json
python scripts/evaluate_model.py --model checkpoints/grn-shapes --ceiling-images 96 --ceiling-videos 40
python scripts/evaluate_model.py --tokenizer outputs/tokenizer/final --ceiling-images 96 --ceiling-videos 40
python scripts/evaluate_model.py --model checkpoints/grn-shapes --condition-gap-images 96 --num-t2i 0 \
    --num-t2v 0 --c2i-per-class 0 --num-chat 0

``--ceiling-*`` add the visual tokenizer's ceiling (true test codes decoded and scored,
``unified_grn.eval.ceiling``); with ``--tokenizer`` instead of ``--model`` only that is computed.
``--ceiling-exact-rounds R`` keeps only the first ``R`` HBQ rounds of the true codes and draws
the finer ones at random: which rounds the checkers' verdicts depend on.
``--condition-gap-images`` adds the teacher-forced loss gap of swapped shapes / colours in the
condition (``unified_grn.eval.conditioning``): does the model listen to each attribute at all?
``--condition-gap-kept-fraction P`` measures it at one noise level (P = 0: the condition alone);
``--condition-gap-cell 8`` on test scenes with every object centred on a latent cell.
``--num-i2v N`` adds image-to-video on the text-to-video test captions, each given its clip's true
first frame: what is left of text-to-video's failure once the first frame is right.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path

import torch

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn import AutoModelForGRN
from unified_grn.eval.ceiling import tokenizer_ceiling
from unified_grn.eval.suite import SuiteConfig, evaluate_model


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a saved GRN folder")
    source.add_argument("--tokenizer", type=Path, help="an HBQ tokenizer folder: its ceiling only")
    parser.add_argument("--out", type=Path, default=Path("outputs/eval.json"))
    parser.add_argument("--threads", type=int, default=None)
    for f in fields(SuiteConfig):
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.model or args.tokenizer
    if not (folder / "config.json").is_file():
        parser.error(
            f"{folder} is not a saved {'GRN model' if args.model else 'tokenizer'} folder (no config.json)"
        )
    cfg = SuiteConfig(**{f.name: getattr(args, f.name) for f in fields(SuiteConfig)})
    if args.tokenizer is not None:
        if cfg.ceiling_images <= 0 and cfg.ceiling_videos <= 0:
            parser.error(
                "--tokenizer computes the ceiling only: give --ceiling-images and/or --ceiling-videos"
            )
        tokenizer = HBQTokenizer.from_pretrained(folder).eval()
        report = {"settings": asdict(cfg), "ceiling": tokenizer_ceiling(
            tokenizer, cfg.ceiling_images, cfg.ceiling_videos, cfg.data_seed, cfg.size,
            exact_rounds=cfg.ceiling_exact_rounds, seed=cfg.seed,
        )}  # fmt: skip
    else:
        model = AutoModelForGRN.from_pretrained(folder).eval()
        report = evaluate_model(model, cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    logging.getLogger("evaluate_model").info("wrote %s", args.out)


if __name__ == "__main__":
    main()
