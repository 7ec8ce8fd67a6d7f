"""Benchmark the trainer: tokens/s and peak memory of plain, ZeRO-2 and ZeRO-3 runs, and the step's overhead.

Two measurements, both on the same model size and batch:

* **Backends**: ``scripts/train.py`` runs once per backend (plain PyTorch, ``--deepspeed zero2``,
  ``--deepspeed zero3``; one process each, fp32 on CPU) on token caches of the procedural worlds,
  written first, so every run trains on stored codes. Reported from each run's ``metrics.jsonl``:
  median tokens/s over the steps after the first two, and the process's peak memory (peak RSS on
  CPU, ``max_memory_allocated`` on CUDA). The runs go one after another, so machine load differs
  between them: compare them with care (the ``environment`` block records the load average).
* ``train_step_vs_backbone``: in one process, interleaved, the trainer's full step
  (``unified_grn.training.loop.train_step`` on a fixed batch: forward, finiteness check, backward,
  clipping, AdamW, schedule) against a bare backbone forward + backward (next-token loss, same
  ``(B, L)``); goal <= 1.15. Also ``train_step_vs_backbone_with_adamw`` (the backbone step
  includes the same optimizer update) and the data time per step when pixels are encoded on the fly.

    python scripts/bench_train.py --quick
    python scripts/bench_train.py --out runs/bench_train.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_utils import base_parser, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"plain": [], "zero2": ["--deepspeed", "zero2"], "zero3": ["--deepspeed", "zero3"]}


def _sizes(quick: bool) -> dict:
    if quick:
        return {"preset": "GRN-tiny", "size": 32, "batch": 8, "steps": 8, "rows": 64, "reps": 5}
    return {"preset": "GRN-shapes", "size": 64, "batch": 16, "steps": 20, "rows": 256, "reps": 10}


def _write_caches(folder: Path, sizes: dict, seed: int) -> list[dict]:
    """Token caches of shapes / moving-shapes / shapes-classes (untrained tokenizer of the preset's layout)."""
    from tokenizers_visual.modeling_hbq import HBQTokenizer
    from unified_grn.configuration_grn import GRNConfig
    from unified_grn.data.sources import SourceConfig
    from unified_grn.data.token_cache import cache_tokens

    torch.manual_seed(seed)
    tokenizer = HBQTokenizer(GRNConfig.from_preset(sizes["preset"]).visual_tokenizer_config).eval()
    sources = []
    for kind, weight in (("shapes", 2.0), ("moving-shapes", 1.0), ("shapes-classes", 1.0)):
        cfg = SourceConfig(kind=kind, size=sizes["size"], num_frames=9, num_samples=sizes["rows"], seed=seed)
        cache_tokens(cfg, tokenizer, folder / kind, progress=False)
        sources.append({"kind": "cache", "path": str(folder / kind), "name": kind, "weight": weight})
    return sources


def _config(folder: Path, sizes: dict, sources: list[dict], seed: int) -> Path:
    cfg = {
        "model": {"preset": sizes["preset"], "overrides": {"num_class_tokens": 18}},
        "data": {"sources": sources, "batch_size": sizes["batch"], "i2v_share": 0.25},
        "optim": {"lr": 1e-3},
        "run": {"seed": seed, "max_steps": sizes["steps"], "log_every": 1, "export_final": False},
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def bench_backend(name: str, config: Path, out: Path, threads: int | None) -> dict:
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "HF_HUB_OFFLINE": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(config), *BACKENDS[name]]
    cmd += [f"output_dir={out}", "run.progress=false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} run failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = rows[2:] if len(rows) > 3 else rows
    return {
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in steady), 1),
        "peak_memory_mb": round(rows[-1]["peak_memory_mb"], 1),
        "final_loss": round(rows[-1]["loss"], 5),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def bench_step(config: Path, out: Path, reps: int) -> dict:
    """The trainer's step on a fixed batch vs a bare backbone forward+backward, interleaved."""
    from transformers import AutoModelForCausalLM

    from unified_grn.training import load_train_config, plan_run
    from unified_grn.training.loop import setup_trainer, train_step

    cfg = load_train_config(config, [f"output_dir={out}", "run.progress=false"])
    tr = setup_trainer(plan_run(cfg, 1, None))
    start = time.perf_counter()
    fixed = tr.stream.next_batch()
    data_s = time.perf_counter() - start
    tr.stream.next_batch = lambda: fixed
    backbone = AutoModelForCausalLM.from_config(tr.model.config.text_config).train()
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=1e-3)
    ids = torch.randint(0, tr.model.config.text_config.vocab_size, fixed.batch.input_ids.shape)

    def backbone_step(with_adamw: bool) -> None:
        backbone(input_ids=ids, labels=ids).loss.backward()
        if with_adamw:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cases = {"train_step": lambda: train_step(tr), "backbone": lambda: backbone_step(False)}
    cases["backbone_adamw"] = lambda: backbone_step(True)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()  # warm-up
    for _ in range(reps):
        for key, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {
        "train_step_vs_backbone": round(best["train_step"] / best["backbone"], 3),
        "train_step_vs_backbone_with_adamw": round(best["train_step"] / best["backbone_adamw"], 3),
        "train_step_s": round(best["train_step"], 4),
        "backbone_fwd_bwd_s": round(best["backbone"], 4),
        "batch_shape": list(fixed.batch.input_ids.shape),
        "first_batch_data_s": round(data_s, 4),
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = _sizes(args.quick)
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        folder = Path(tmp)
        config = _config(folder, sizes, _write_caches(folder, sizes, args.seed), args.seed)
        backends = {name: bench_backend(name, config, folder / name, args.threads) for name in BACKENDS}
        step = bench_step(config, folder / "step", sizes["reps"])
    result = {
        "benchmark": "train",
        "preset": sizes["preset"],
        "image_size": sizes["size"],
        "batch_size": sizes["batch"],
        "steps": sizes["steps"],
        "backends": backends,
        **step,
        "goal_train_step_vs_backbone": 1.15,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
