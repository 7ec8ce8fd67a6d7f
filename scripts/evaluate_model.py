"""Score a GRN model on the held-out shapes prompts with every checker (``unified_grn.eval.suite``).

python scripts/evaluate_model.py --model checkpoints/grn-shapes --out outputs/eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from pathlib import Path

import torch

from unified_grn import AutoModelForGRN
from unified_grn.eval.suite import SuiteConfig, evaluate_model


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("outputs/eval.json"))
    parser.add_argument("--threads", type=int, default=None)
    for f in fields(SuiteConfig):
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.model / "config.json").is_file():
        parser.error(f"{args.model} is not a saved GRN model folder (no config.json)")
    model = AutoModelForGRN.from_pretrained(args.model).eval()
    cfg = SuiteConfig(**{f.name: getattr(args, f.name) for f in fields(SuiteConfig)})
    report = evaluate_model(model, cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    logging.getLogger("evaluate_model").info("wrote %s", args.out)


if __name__ == "__main__":
    main()
