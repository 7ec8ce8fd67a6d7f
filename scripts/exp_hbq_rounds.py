"""HBQ rounds vs reconstruction quality (GRN paper Fig. 5 / Table 2 trend) at CPU scale.

Trains the same tokenizer (same preset, data, seed and step budget) with M in {2, 4, 6, 8} HBQ
rounds and once unquantized (``rounds=None``, the paper's "w/o quant" twin), then writes a
PSNR / SSIM / LPIPS table into ``docs/RESULTS.md`` between the markers of this experiment.

    grn make-data shapes --out data/shapes --n 20000 --seed 0 --test-fraction 0.05
    python scripts/exp_hbq_rounds.py --config configs/tokenizer/tiny.yaml --steps 3000

Resumable: a finished run (its ``eval.json`` exists) is reused, an interrupted one continues from
its last checkpoint. LPIPS here uses a random VGG backbone (no ImageNet weights can be had
offline), so its column is reported as uncalibrated.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- exp_hbq_rounds:begin -->", "<!-- exp_hbq_rounds:end -->"
PAPER_TABLE2 = {2: None, 4: 30.40, 6: 30.98, 8: 31.10, None: 31.14}  # ImageNet 256, C=16 (Table 2)

logger = logging.getLogger("exp_hbq_rounds")


def run_one(args: argparse.Namespace, rounds: int | None) -> dict:
    name = "unquantized" if rounds is None else f"M{rounds}"
    out = args.out_dir / name
    if (out / "eval.json").exists():
        logger.info("%s: reusing %s", name, out / "eval.json")
    else:
        cmd = [
            sys.executable, "-m", "tokenizers_visual.train", "--config", str(args.config),
            f"model.overrides={{rounds: {'null' if rounds is None else rounds}}}",
            f"run.max_steps={args.steps}", "run.max_time_s=null", f"run.output_dir={out}",
            f"run.seed={args.seed}", f"data.image_dir={args.data}",
        ]  # fmt: skip
        if (out / "checkpoints" / "latest").exists():
            cmd.append("--resume")
        logger.info("%s: %s", name, shlex.join(cmd))
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        (out / "wall_time_s.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
    result = json.loads((out / "eval.json").read_text())
    wall = out / "wall_time_s.txt"
    result["wall_time_s"] = float(wall.read_text()) if wall.exists() else None
    return result


def table(results: dict[int | None, dict], args: argparse.Namespace) -> str:
    lines = [
        BEGIN,
        f"Command: `python scripts/exp_hbq_rounds.py {' '.join(args.argv)}` "
        f"(config `{args.config}`, {args.steps} steps each, seed {args.seed}, held-out `shapes` test split).",
        "",
        "| HBQ rounds M | bits / latent value | PSNR (dB) | SSIM | LPIPS (uncalibrated) | ΔPSNR vs unquantized | wall time (s) | paper PSNR (Table 2, ImageNet) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = results[None]["image"]["psnr"] if None in results else None
    for rounds, res in results.items():
        s = res["image"]
        delta = "" if ref is None or rounds is None else f"{s['psnr'] - ref:+.2f}"
        paper = PAPER_TABLE2.get(rounds)
        lines.append(
            f"| {'w/o quant' if rounds is None else rounds} | {'32 (float)' if rounds is None else rounds} "
            f"| {s['psnr']:.2f} | {s['ssim']:.4f} | {s.get('lpips', float('nan')):.4f} | {delta} "
            f"| {res['wall_time_s'] or ''} | {'' if paper is None else paper} |"
        )
    lines += [
        "",
        "LPIPS uses a random VGG16 backbone here: comparable between rows, not to published LPIPS.",
        END,
    ]
    return "\n".join(lines)


def write_results(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else "# Results\n"
    if BEGIN in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n## HBQ rounds vs reconstruction (Fig. 5)\n\n" + text + "\n"
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("configs/tokenizer/tiny.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/shapes"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", default="2,4,6,8,none", help="comma-separated; 'none' = unquantized")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/exp_hbq_rounds"))
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "RESULTS.md")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rounds = [None if r.strip().lower() == "none" else int(r) for r in args.rounds.split(",")]
    results = {r: run_one(args, r) for r in rounds}
    text = table(results, args)
    write_results(text, args.results)
    print(text)


if __name__ == "__main__":
    main()
