"""Benchmark of ``model.generate`` (GRN paper Alg. 3, Eq. 8-9): sampler overhead and the two fast paths.

All numbers come from one run on GRN-shapes-sized models (random weights, so quality is not measured):

* ``sampler_overhead``: wall time of ``generate(output_type="codes")`` (no visual decode) divided by
  the summed time inside the backbone's forward calls (goal <= 1.05). The decode time of the same
  codes is reported apart (``decode_s``).
* ``prefix_cache_speedup``: prompt cache (encoded once, cropped back each step) vs re-encoding the
  prompt at every step, at 256 text + 256 visual tokens and 50 steps, no guidance; goal >= 1.8.
  ``prefix_cache_identical``: same codes. Ceilings: ``2S / (S + 1)`` (1.96 at 50 steps) if a prompt
  call cost as much as a block call; ``prefix_cache_ceiling_measured`` = ``S (P + B) / (P + S B)``
  from the timed prompt call ``P`` and block call ``B`` (the block attends to 512 keys, the prompt
  to 256, so ``B > P``), and ``prefix_cache_of_ceiling`` = median speedup / that ceiling.
* ``cfg_batch_speedup``: cond + uncond rows in one backbone call vs two calls (about 1 on a
  2-core CPU; the gain is a GPU property). ``cfg_batch_identical``: same codes.
* ``entropy_mean_steps``: mean steps of the entropy schedule (official C2I k = 700, b = -620,
  T_min = 20, T_max = 50; ``--quick``: T_max = 24) against ``fixed_steps`` = T_max; with random weights the prediction entropy is
  near 1, so this is T_max. ``entropy_mean_steps_fitted``: after fitting k, b on calibration prompts
  (``fit_entropy_schedule``) to a target mean of (T_min + T_max) / 2 = 35, measured on other prompts.

Timed runs alternate between the compared paths so that load from other processes hits both alike;
ratios use the fastest run of each path (medians are reported too).

    python scripts/bench_generate.py --quick
    python scripts/bench_generate.py --out runs/bench_generate.json
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
from _bench_utils import base_parser, report

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.generation import PromptCacheLogits
from unified_grn.refinement import GRNRefinementScheduler, RefinementConfig
from unified_grn.schedules import fit_entropy_schedule

PROMPTS = [
    "two red circles to the left of a blue square",
    "a green triangle",
    "three yellow squares in a row",
    "one purple circle at the bottom right",
]
HELD_OUT = ["a blue triangle above a red square", "four small circles", "an orange square", "a circle"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class BackboneTimer:
    """Summed wall time inside ``model.language_model``'s forward calls (hooks; CUDA-synchronised)."""

    def __init__(self, model: GRNForConditionalGeneration) -> None:
        self.device, self.total, self.calls, self._start = model.device, 0.0, 0, 0.0
        module = model.language_model
        self._hooks = [
            module.register_forward_pre_hook(self._before),
            module.register_forward_hook(self._after),
        ]

    def _before(self, *_) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def _after(self, *_) -> None:
        _sync(self.device)
        self.total += time.perf_counter() - self._start
        self.calls += 1

    def reset(self) -> None:
        self.total, self.calls = 0.0, 0

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def build(device: torch.device, seed: int, **overrides) -> GRNForConditionalGeneration:
    torch.manual_seed(seed)
    config = GRNConfig.from_preset("GRN-shapes", **overrides)
    return GRNForConditionalGeneration(config).to(device).eval()


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int, device: torch.device
) -> dict[str, list[float]]:
    """Run every function once (warm-up), then ``reps`` rounds alternating them; seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _speedup(times: dict[str, list[float]], slow: str, fast: str) -> dict[str, float]:
    return {
        "best": round(min(times[slow]) / min(times[fast]), 4),
        "median": round(statistics.median(times[slow]) / statistics.median(times[fast]), 4),
        f"{fast}_best_s": round(min(times[fast]), 4),
        f"{slow}_best_s": round(min(times[slow]), 4),
    }


def bench_overhead(model: GRNForConditionalGeneration, steps: int, reps: int) -> dict[str, object]:
    """generate wall time (codes only) / summed backbone forward time, and the decode time apart."""
    timer = BackboneTimer(model)
    kw = dict(num_steps=steps, seed=0, output_type="codes", progress_bar=False)
    model.generate(PROMPTS, **kw)  # warm-up
    ratios, walls = [], []
    for _ in range(reps):
        timer.reset()
        _sync(model.device)
        start = time.perf_counter()
        out = model.generate(PROMPTS, **kw)
        _sync(model.device)
        walls.append(time.perf_counter() - start)
        ratios.append(walls[-1] / timer.total)
    timer.close()
    tokenizer = model.visual_tokenizer.to(model.device)
    decode = interleaved(
        {"decode": lambda: tokenizer.decode(out.codes.bits)}, max(1, reps // 2), model.device
    )
    return {
        "sampler_overhead": round(min(ratios), 4),
        "sampler_overhead_median": round(statistics.median(ratios), 4),
        "generate_s": round(min(walls), 4),
        "backbone_calls": timer.calls,
        "decode_s": round(min(decode["decode"]), 4),
        "batch_size": len(PROMPTS),
        "steps": steps,
        "grid": list(out.codes.grid),
    }


def bench_prefix_cache(device: torch.device, seed: int, steps: int, reps: int) -> dict[str, object]:
    """256 text + 256 visual tokens (a 16x16 latent grid), no guidance, cache vs re-encoding."""
    model = build(device, seed, max_latent_grid=(1, 16, 16))
    prompt = ("a red circle left of a blue square " * 8)[:254]  # [BOS] + 254 bytes + <|image_start|>
    kw = dict(height=128, width=128, num_steps=steps, guidance_scale=1.0, seed=0, output_type="codes")
    kw["progress_bar"] = False
    outs: dict[str, torch.Tensor] = {}

    def run(name: str, cache: bool) -> Callable[[], None]:
        def fn() -> None:
            outs[name] = model.generate(prompt, use_prefix_cache=cache, **kw).codes.bits

        return fn

    times = interleaved({"cache": run("cache", True), "no_cache": run("no_cache", False)}, reps, device)
    prompt_len = len(model.prepare_prompts([prompt])[0][0])
    parts = _prefix_parts(model, prompt, reps)
    # Without the cache every step runs the prompt (P) and the block (B); with it, P once and B per
    # step. B attends to P + 256 keys and P to P, so B > P and the ceiling is below 2S / (S + 1).
    prompt_s, block_s = min(parts["prompt"]), min(parts["block"])
    ceiling = steps * (prompt_s + block_s) / (prompt_s + steps * block_s)
    speedup = _speedup(times, "no_cache", "cache")
    return {
        "prefix_cache_speedup": speedup,
        "prefix_cache_identical": bool(torch.equal(outs["cache"], outs["no_cache"])),
        "prefix_cache_ceiling_equal_calls": round(2 * steps / (steps + 1), 4),
        "prefix_cache_ceiling_measured": round(ceiling, 4),
        "prefix_cache_of_ceiling": round(speedup["median"] / ceiling, 4),
        "prefix_cache_parts_s": {"prompt": round(prompt_s, 4), "block": round(block_s, 4)},
        "prefix_cache_tokens": {"text": prompt_len, "visual": 256, "steps": steps},
    }


def _prefix_parts(model: GRNForConditionalGeneration, prompt: str, reps: int) -> dict[str, list[float]]:
    """Seconds of one prompt encode and of one 16x16 visual block against the cached prompt."""
    ids, mask = model.prepare_prompts([prompt], "image")
    cache = model.encode_prompt(ids, mask)
    vocab = model.vocab
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(
        0, 2, (1, 1, 16, 16, vocab.num_channels, vocab.num_rounds), generator=g, dtype=torch.uint8
    )
    bits = bits.to(model.device)
    with torch.no_grad():
        return interleaved(
            {
                "prompt": lambda: model.encode_prompt(ids, mask),
                "block": lambda: model.visual_logits_from_cache(cache, bits, 0.5),
            },
            max(3, reps),
            model.device,
        )


def bench_cfg_batch(model: GRNForConditionalGeneration, steps: int, reps: int) -> dict[str, object]:
    kw = dict(num_steps=steps, guidance_scale=3.0, guidance_interval=(0.0, 1.0), seed=0, output_type="codes")
    kw["progress_bar"] = False
    outs: dict[str, torch.Tensor] = {}

    def run(name: str, batched: bool) -> Callable[[], None]:
        def fn() -> None:
            outs[name] = model.generate(PROMPTS[:2], cfg_batched=batched, **kw).codes.bits

        return fn

    times = interleaved(
        {"batched": run("batched", True), "two_pass": run("two_pass", False)}, reps, model.device
    )
    return {
        "cfg_batch_speedup": _speedup(times, "two_pass", "batched"),
        "cfg_batch_identical": bool(torch.equal(outs["batched"], outs["two_pass"])),
    }


def bench_entropy(model: GRNForConditionalGeneration, fixed_steps: int) -> dict[str, object]:
    kw = dict(num_steps=fixed_steps, schedule="entropy", seed=0, output_type="codes", progress_bar=False)
    official = model.generate(HELD_OUT, **kw).stats
    # Fit k, b on the calibration prompts: their decision entropies H(Y_{t0+1}) (Eq. 8) at the T2I defaults.
    config = RefinementConfig(num_steps=fixed_steps, schedule="entropy", guidance_scale=3.0, temperature=1.1)
    scheduler = GRNRefinementScheduler(config)
    grid = (1, *model.config.max_latent_grid[1:])
    logits_fn = PromptCacheLogits(model, PROMPTS, 1, "image", grid, guided=True)
    shape = (len(PROMPTS), grid[1] * grid[2], model.vocab.num_slots)
    gens = [torch.Generator(device=model.device).manual_seed(i) for i in range(len(PROMPTS))]
    state = scheduler.init_state(shape, model.vocab.num_classes, gens, device=model.device)
    entropy = scheduler.decision_entropy(logits_fn, state, gens)
    target = (config.min_steps + fixed_steps) / 2  # 35 at T_max = 50
    k, b = fit_entropy_schedule(entropy, target, max_steps=fixed_steps)
    fitted_config = dataclasses.replace(config, entropy_k=k, entropy_b=b)
    fitted = model.generate(HELD_OUT, refinement_config=fitted_config, **kw).stats
    return {
        "entropy_mean_steps": official.mean_steps,
        "fixed_steps": fixed_steps,
        "entropy_decision_entropy": [round(x, 5) for x in official.decision_entropy.tolist()],
        "entropy_mean_steps_fitted": fitted.mean_steps,
        "entropy_fit": {"k": round(k, 3), "b": round(b, 3), "target_mean_steps": target},
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps, reps, fixed_steps = (5, 1, 24) if args.quick else (50, 5, 50)
    model = build(device, args.seed)
    result: dict[str, object] = {"preset": "GRN-shapes", "device": str(device), "quick": args.quick}
    result.update(bench_overhead(model, steps, reps))
    result.update(bench_prefix_cache(device, args.seed, steps, reps))
    result.update(bench_cfg_batch(model, steps, reps))
    result.update(bench_entropy(model, fixed_steps))
    report(result, args.out)


if __name__ == "__main__":
    main()
