"""Benchmark: GRN train step vs a bare backbone train step on the same tokens, and peak memory.

GRN paper Sec. 3.2 / Alg. 2 (one training step: corrupt, forward, cross-entropy, backward). For
each preset (GRN-tiny, GRN-shapes) it times forward+backward of

* the GRN model on a collated text-to-image (and, without ``--quick``, text-to-video) batch;
* the bare backbone (the same ``AutoModelForCausalLM`` config) on random ids of the same
  ``(B, L)``, with the usual next-token loss over every position,

in one run (interleaved, so other load hits both alike), and reports ``train_step_vs_backbone`` =
fastest GRN step / fastest backbone step (goal <= 1.15; the median ratio is reported too) and
the peak memory of one step of each (CUDA: ``max_memory_allocated``; CPU: peak RSS growth sampled every
millisecond). The last line of stdout is the JSON result; ``--out`` also writes it to a file.

    python scripts/bench_model.py --quick
    python scripts/bench_model.py --out runs/bench_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from unified_grn import GRNCollator, GRNConfig, GRNForConditionalGeneration, GRNSample

PROMPT = "two red circles to the left of a blue square"


class PeakMemory:
    """Peak memory growth (MB) inside the ``with`` block: CUDA allocator, or RSS sampled every ms.

    On CPU the allocator keeps freed memory, so RSS growth is only meaningful for the first step
    of a fresh process: :func:`peak_memory_mb` runs each case in a subprocess.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self, base: float) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb() - base)
            time.sleep(0.001)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._thread = threading.Thread(target=self._sample, args=(self._rss_mb(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()


def peak_memory_mb(preset: str, case: str, batch_size: int, video: bool, device: torch.device) -> float:
    """Peak memory of one training step of ``case`` (grn | backbone), in a fresh process."""
    cmd = [
        sys.executable,
        __file__,
        "--memory-case",
        case,
        "--presets",
        preset,
        "--batch-size",
        str(batch_size),
    ]
    cmd += ["--device", str(device)] + ([] if video else ["--quick"])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_interleaved(steps: dict, reps: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Alternate the step functions ``reps`` times (after one warm-up each), so load from other
    processes hits them alike; min and median seconds per step."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()
    for _ in range(reps):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, step in steps.items():
        with PeakMemory(device) as mem:
            step()
        out[name] = {
            "min_s": min(times[name]),
            "median_s": statistics.median(times[name]),
            "peak_mb": mem.peak_mb,
        }
    return out


def _batch(model: GRNForConditionalGeneration, batch_size: int, video: bool):
    torch.manual_seed(0)
    c, m = model.config.num_channels, model.config.num_rounds
    t_max, h, w = model.config.max_latent_grid
    samples = []
    for i in range(batch_size):
        if video and i % 2:
            bits = torch.randint(0, 2, (t_max, h, w, c, m), dtype=torch.uint8)
            samples.append(GRNSample.text_to_video(PROMPT, bits))
        else:
            samples.append(
                GRNSample.text_to_image(PROMPT, torch.randint(0, 2, (1, h, w, c, m), dtype=torch.uint8))
            )
    return GRNCollator.from_model(model, seed=0)(samples)


def build_steps(name: str, batch_size: int, video: bool, device: torch.device):
    """The two training steps of a preset (GRN, bare backbone on the same ``(B, L)``) and the batch."""
    torch.manual_seed(0)
    model = GRNForConditionalGeneration(GRNConfig.from_preset(name)).to(device).train()
    batch = _batch(model, batch_size, video).to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def grn_step() -> None:
        model.zero_grad(set_to_none=True)
        model(**batch.as_dict(), generator=generator).loss.backward()

    backbone = AutoModelForCausalLM.from_config(model.config.text_config).to(device).train()
    ids = torch.randint(0, model.config.text_config.vocab_size, batch.input_ids.shape, device=device)

    def backbone_step() -> None:
        backbone.zero_grad(set_to_none=True)
        backbone(input_ids=ids, labels=ids).loss.backward()

    counts = {
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for p in backbone.parameters()),
    }
    return {"grn": grn_step, "backbone": backbone_step}, batch, counts


def bench_preset(name: str, batch_size: int, reps: int, video: bool, device: torch.device) -> dict:
    steps, batch, counts = build_steps(name, batch_size, video, device)
    t = _time_interleaved(steps, reps, device)
    grn, bb = t["grn"], t["backbone"]
    return {
        "batch_size": batch_size,
        "seq_len": int(batch.input_ids.shape[1]),
        "visual_positions": int(batch.visual_codes.shape[0]),
        **counts,
        "grn_step_s": {"min": round(grn["min_s"], 5), "median": round(grn["median_s"], 5)},
        "backbone_step_s": {"min": round(bb["min_s"], 5), "median": round(bb["median_s"], 5)},
        # Ratio of the fastest runs: the least disturbed by other processes on a shared machine.
        "train_step_vs_backbone": round(grn["min_s"] / bb["min_s"], 4),
        "train_step_vs_backbone_median": round(grn["median_s"] / bb["median_s"], 4),
        "grn_peak_mb": round(peak_memory_mb(name, "grn", batch_size, video, device), 2),
        "backbone_peak_mb": round(peak_memory_mb(name, "backbone", batch_size, video, device), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repetitions, images only")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    parser.add_argument("--presets", nargs="+", default=["GRN-tiny", "GRN-shapes"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--memory-case", choices=["grn", "backbone"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch_size, reps = (4, 5) if args.quick else (8, 15)
    batch_size = args.batch_size or batch_size
    if args.memory_case:  # child process of peak_memory_mb: one step, fresh allocator
        steps, _, _ = build_steps(args.presets[0], batch_size, not args.quick, device)
        with PeakMemory(device) as mem:
            steps[args.memory_case]()
        print(json.dumps({"peak_mb": mem.peak_mb}))
        return
    results = {name: bench_preset(name, batch_size, reps, not args.quick, device) for name in args.presets}
    summary = {
        "benchmark": "bench_model",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "train_step_vs_backbone": {k: v["train_step_vs_backbone"] for k, v in results.items()},
        "peak_memory_mb": {
            k: {"grn": v["grn_peak_mb"], "backbone": v["backbone_peak_mb"]} for k, v in results.items()
        },
        "results": results,
    }
    line = json.dumps(summary)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
