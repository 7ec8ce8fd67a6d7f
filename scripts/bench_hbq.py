"""Benchmark HBQ quantize+dequantize against a plain copy, and tokenizer encode/decode speed.

    python scripts/bench_hbq.py [--quick] [--out bench/hbq.json]

Keys of the JSON report (last line of stdout):
- ``hbq_copy_fraction``: throughput of ``dequantize(quantize(z))`` as a fraction of ``z.clone()``
  on the same tensor, best of several runs each (goal >= 0.3);
- ``encode_images_per_s`` / ``decode_images_per_s``: the HBQ tokenizer on CPU (preset and size in
  the report).
"""

from __future__ import annotations

import torch
from _bench_utils import base_parser, report, time_call

from tokenizers_visual import hbq
from tokenizers_visual.modeling_hbq import HBQTokenizer, HBQTokenizerConfig


def bench_quantizer(numel: int, channels: int, rounds: int, repeats: int, seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(numel // channels, channels, generator=gen).mul_(2).sub_(1)  # (N, C) in [-1, 1]
    copy = time_call(lambda: z.clone(), repeats)
    roundtrip = time_call(lambda: hbq.dequantize(hbq.quantize(z, rounds)), repeats)
    return {
        "hbq_copy_fraction": copy["best_s"] / roundtrip["best_s"],
        "hbq_copy_fraction_median": copy["median_s"] / roundtrip["median_s"],
        "hbq_roundtrip_gb_per_s": z.numel() * 4 / roundtrip["best_s"] / 1e9,
        "copy_gb_per_s": z.numel() * 4 / copy["best_s"] / 1e9,
        "hbq_numel": z.numel(),
        "hbq_rounds": rounds,
    }


@torch.no_grad()
def bench_tokenizer(preset: str, size: int, batch: int, repeats: int, seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    tokenizer = HBQTokenizer(HBQTokenizerConfig.from_preset(preset)).eval()
    pixels = torch.rand(batch, 3, size, size).mul_(2).sub_(1)
    codes = tokenizer.encode(pixels)
    enc = time_call(lambda: tokenizer.encode(pixels), repeats)
    dec = time_call(lambda: tokenizer.decode(codes), repeats)
    return {
        "tokenizer_preset": preset,
        "tokenizer_params": sum(p.numel() for p in tokenizer.parameters()),
        "image_size": size,
        "batch": batch,
        "encode_images_per_s": batch / enc["best_s"],
        "decode_images_per_s": batch / dec["best_s"],
    }


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--preset", default="hbq-shapes")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    numel = 2**20 if args.quick else 2**24
    repeats = 5 if args.quick else 20
    result = bench_quantizer(numel, channels=16, rounds=4, repeats=repeats, seed=args.seed)
    batch = 8 if args.quick else 32
    result |= bench_tokenizer(args.preset, args.size, batch, repeats=2 if args.quick else 5, seed=args.seed)
    report(result, args.out)


if __name__ == "__main__":
    main()
