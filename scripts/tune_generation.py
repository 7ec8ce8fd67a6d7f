"""Pick a model's sampling defaults on held-out prompts and save them as its ``generation_config.json``.

GRN's sampler settings (steps, CFG scale, visual temperature; Sec. 3.2 and Appendix D) are
model-specific: the paper tunes them per model (Table 7, "tuned settings"), and a small CPU model
wants other values than the 2B one. This script scores every point of a small grid with the
text-to-image checker (``unified_grn.eval.suite``, test-split prompts, fixed seeds), writes the
table to ``--out`` and, with ``--save``, stores the best point in the model folder.

``--objective overall`` ranks points by the GenEval-style overall score; ``checks`` (the default) by
the mean pass rate of the individual checks (presence, count, colour, shape, no extra object,
position). While a model is weak, few prompts pass every check and the overall score of 32 prompts
moves in steps of 1/32; the checks average over many more decisions, so the ranking is less noisy.

    python scripts/tune_generation.py --model checkpoints/grn-shapes --save
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path

import torch

from unified_grn import AutoModelForGRN
from unified_grn.eval.suite import SuiteConfig, evaluate_model

logger = logging.getLogger("tune_generation")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="JSON table (default MODEL/tune_generation.json)")
    p.add_argument("--num-steps", type=int, nargs="+", default=[16, 32])
    # A saved value equal to GRNGenerationConfig's own default (guidance 3.0, temperature 1.0)
    # leaves the per-task defaults in force (generation_utils), so the grid avoids those two.
    p.add_argument("--guidance-scale", type=float, nargs="+", default=[1.5, 2.5, 4.0])
    p.add_argument("--temperature", type=float, nargs="+", default=[0.7, 0.9])
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument(
        "--objective",
        choices=("checks", "overall"),
        default="checks",
        help="rank by the mean check pass rate (default) or the overall T2I score",
    )
    p.add_argument("--seed", type=int, default=1000, help="sampling seed (apart from the evaluation's)")
    p.add_argument(
        "--save", action="store_true", help="write the best point into MODEL/generation_config.json"
    )
    return p.parse_args(argv)


def score(model, steps: int, scale: float, temperature: float, args: argparse.Namespace) -> dict[str, float]:
    """``{"t2i": overall, "checks": mean check pass rate}`` of one grid point."""
    cfg = SuiteConfig(num_t2i=args.num_prompts, num_t2v=0, c2i_per_class=0, num_chat=0, seed=args.seed)
    cfg.num_steps, cfg.guidance_scale, cfg.temperature = steps, scale, temperature
    cfg.size = int(model.generation_config.height)
    t2i = evaluate_model(model, cfg)["t2i"]
    checks = [float(v) for v in t2i["checks"].values() if v is not None]
    return {"t2i": float(t2i["overall"]), "checks": sum(checks) / max(1, len(checks))}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"error: {args.model} is not a saved GRN model folder (no config.json)")
    model = AutoModelForGRN.from_pretrained(args.model).eval()
    rows = []
    with torch.inference_mode():
        for steps, scale, temperature in itertools.product(
            args.num_steps, args.guidance_scale, args.temperature
        ):
            point = {"num_steps": steps, "guidance_scale": scale, "temperature": temperature}
            rows.append(point | score(model, steps, scale, temperature, args))
            logger.info("%s", rows[-1])
    other = "t2i" if args.objective == "checks" else "checks"
    key = "checks" if args.objective == "checks" else "t2i"
    best = max(rows, key=lambda r: (r[key], r[other], -r["num_steps"]))
    out = args.out or args.model / "tune_generation.json"
    out.write_text(
        json.dumps(
            {
                "grid": rows,
                "best": best,
                "objective": args.objective,
                "num_prompts": args.num_prompts,
                "seed": args.seed,
            },
            indent=2,
        )
    )
    logger.info("best %s; table in %s", best, out)
    if args.save:
        gen = type(model.generation_config).from_pretrained(args.model)
        gen.num_steps, gen.guidance_scale, gen.temperature = (
            best["num_steps"],
            best["guidance_scale"],
            best["temperature"],
        )
        gen.save_pretrained(args.model)
        logger.info("saved %s/generation_config.json", args.model)


if __name__ == "__main__":
    main()
