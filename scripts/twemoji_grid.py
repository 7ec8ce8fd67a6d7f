"""Text-to-image on Twemoji names: the qualitative grid of docs/RESULTS.md (issue 7, real data).

Each row is one emoji name: the real emoji (left, not seen by the generator for held-out names),
then ``--samples`` generations for that name (seeds ``seed + k``). Half the rows are names from the
train split, half from the held-out test split (10% of base emoji by codepoint hash,
``unified_grn.data.real.is_twemoji_holdout``), chosen by ``--seed``. A JSON beside the PNG records the
model, settings, names and seeds, and a crude colour agreement (mean RGB distance between a sample and
its real emoji over the non-white pixels) with a shuffled-name control, so the grid is not the only
evidence.

    python scripts/twemoji_grid.py --model outputs/grn-twemoji/final --out docs/results/twemoji_t2i.png
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unified_grn import AutoModelForGRN

logger = logging.getLogger("twemoji_grid")

CELL, LABEL_W, PAD = 64, 230, 4


def read_split(folder: Path, split: str) -> list[dict]:
    """Rows of ``folder/split/metadata.jsonl`` (``file_name``, ``text``), with the image path."""
    meta = folder / split / "metadata.jsonl"
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta} is missing; run `bash scripts/install_real_data.sh && grn make-data-real twemoji "
            f"--out {folder}` first."
        )
    rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
    return [{**r, "path": folder / split / r["file_name"], "split": split} for r in rows]


def pick_rows(folder: Path, per_split: int, seed: int) -> list[dict]:
    """``per_split`` rows of each split, seeded, no skin-tone variants (one row per base emoji)."""
    rng = random.Random(seed)
    picked = []
    for split in ("train", "test"):
        rows = [r for r in read_split(folder, split) if "skin tone" not in r["text"]]
        picked += rng.sample(rows, min(per_split, len(rows)))
    return picked


def colour_distance(sample: np.ndarray, real: np.ndarray) -> float:
    """Mean RGB of the non-white pixels of each image, L2 distance (0..441); white-only -> 441."""

    def mean_ink(im: np.ndarray) -> np.ndarray | None:
        ink = (im.astype(np.float32) < 235).any(-1)
        return im[ink].astype(np.float32).mean(0) if ink.sum() >= 8 else None

    a, b = mean_ink(sample), mean_ink(real)
    return 441.7 if a is None or b is None else float(np.linalg.norm(a - b))


def draw_grid(rows: list[dict], samples: list[list[Image.Image]]) -> Image.Image:
    """Label | real | samples..., one row per name; held-out names marked."""
    cols = 1 + len(samples[0])
    width = LABEL_W + cols * (CELL + PAD) + PAD
    height = PAD + 18 + len(rows) * (CELL + PAD)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((PAD, PAD), "name (split)", fill="black")
    draw.text((LABEL_W, PAD), "real", fill="black")
    draw.text((LABEL_W + CELL + PAD, PAD), "generated (seeds 0..)", fill="black")
    for i, (row, imgs) in enumerate(zip(rows, samples)):
        y = PAD + 18 + i * (CELL + PAD)
        label = row["text"] if len(row["text"]) <= 34 else row["text"][:32] + "..."
        draw.text((PAD, y + CELL // 2 - 12), label, fill="black")
        draw.text((PAD, y + CELL // 2 + 2), "held-out" if row["split"] == "test" else "train", fill="gray")
        real = Image.open(row["path"]).convert("RGB").resize((CELL, CELL))
        for j, im in enumerate([real, *imgs]):
            grid.paste(im.convert("RGB").resize((CELL, CELL)), (LABEL_W + j * (CELL + PAD), y))
    return grid


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("data/twemoji"))
    p.add_argument("--out", type=Path, default=Path("docs/results/twemoji_t2i.png"))
    p.add_argument("--rows-per-split", type=int, default=8)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--num-steps", type=int, default=None)
    p.add_argument("--guidance-scale", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.model / "config.json").is_file():
        p.error(f"{args.model} is not a saved GRN model folder (no config.json)")
    model = AutoModelForGRN.from_pretrained(args.model).eval()
    rows = pick_rows(args.data, args.rows_per_split, args.seed)
    names = [r["text"] for r in rows]
    kwargs = dict(num_steps=args.num_steps, guidance_scale=args.guidance_scale, temperature=args.temperature)
    out = model.generate(
        names, num_images_per_prompt=args.samples, seed=args.seed, progress_bar=False, **kwargs
    )
    k = args.samples
    samples = [out.images[i * k : (i + 1) * k] for i in range(len(rows))]  # prompt-major
    reals = [np.asarray(Image.open(r["path"]).convert("RGB")) for r in rows]
    shuffled = reals[1:] + reals[:1]  # control: each sample against another row's emoji
    dist = [np.mean([colour_distance(np.asarray(s), real) for s in ss]) for ss, real in zip(samples, reals)]
    ctrl = [
        np.mean([colour_distance(np.asarray(s), real) for s in ss]) for ss, real in zip(samples, shuffled)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(rows, samples).save(args.out)
    record = {
        "model": str(args.model),
        "command": "python scripts/twemoji_grid.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k_: v for k_, v in vars(args).items() if k_ not in {"model", "data", "out"}},
        "generation_config": {
            key: getattr(model.generation_config, key, None)
            for key in ("num_steps", "guidance_scale", "temperature")
        },
        "rows": [
            {"text": r["text"], "split": r["split"], "colour_distance": round(float(d), 1)}
            for r, d in zip(rows, dist)
        ],
        "mean_colour_distance": {
            split: round(float(np.mean([d for r, d in zip(rows, dist) if r["split"] == split])), 1)
            for split in ("train", "test")
        },
        "mean_colour_distance_shuffled_names": round(float(np.mean(ctrl)), 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    logger.info(
        "wrote %s (+ .json): colour distance %s, shuffled control %.1f",
        args.out,
        record["mean_colour_distance"],
        record["mean_colour_distance_shuffled_names"],
    )


if __name__ == "__main__":
    main()
