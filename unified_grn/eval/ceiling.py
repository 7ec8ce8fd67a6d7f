"""The visual tokenizer's ceiling on the checkers: what a GRN would score if it sampled exactly the
codes of the held-out scenes.

GRN generates HBQ codes and the tokenizer's decoder turns them into pixels (paper Sec. 3.1), so
no GRN can pass a checker more often than the tokenizer's own reconstructions of true scenes do
(the generation analogue of reporting rFID next to gFID, Sec. 4.2). Here the ground-truth renders
of the ``test`` split (images of ``shapes``, clips of ``moving-shapes``) are encoded, decoded and
scored with the same checkers as generated samples; the renders themselves are scored too, as the
checker's own reference (1.0 on this project's worlds).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from einops import rearrange

from tokenizers_visual.modeling_hbq import HBQCodes
from unified_grn.data.moving_shapes import make_moving_shapes_example
from unified_grn.data.shapes import make_shapes_example
from unified_grn.eval.t2i import evaluate_t2i
from unified_grn.eval.t2v import evaluate_t2v

__all__ = ["randomize_rounds", "reconstruct", "tokenizer_ceiling"]

logger = logging.getLogger(__name__)


def randomize_rounds(
    codes: HBQCodes, exact_rounds: int, generator: torch.Generator | None = None
) -> HBQCodes:
    """Codes whose first ``exact_rounds`` HBQ rounds are kept and whose finer rounds are redrawn
    uniformly at random: what a generator that gets only the coarse rounds right would hand the decoder."""
    bits = codes.bits
    rounds = bits.shape[-1]
    if not 0 <= exact_rounds <= rounds:
        raise ValueError(
            f"exact_rounds must be in [0, {rounds}] (the tokenizer's rounds), got {exact_rounds}."
        )
    gen_device = generator.device if generator is not None else bits.device
    noise = torch.randint(0, 2, bits.shape, generator=generator, device=gen_device, dtype=torch.uint8)
    keep = torch.arange(rounds, device=bits.device) < exact_rounds  # (M,), coarse rounds first
    return HBQCodes.from_bits(torch.where(keep, bits, noise.to(bits.device)))


def to_pixels(tokenizer, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames ``(B, T, H, W, 3)`` -> the tokenizer's input ``(B, 3, T, H, W)`` in [-1, 1],
    on its device and in its dtype."""
    param = next(tokenizer.parameters())
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(param.device, param.dtype)
    return rearrange(pixels, "b t h w c -> b c t h w") / 127.5 - 1.0  # [0, 255] -> [-1, 1]


@torch.no_grad()
def reconstruct(
    tokenizer, frames: np.ndarray, exact_rounds: int | None = None, generator: torch.Generator | None = None
) -> np.ndarray:
    """Encode and decode uint8 pixels ``(B, T, H, W, 3)`` (``T = 1`` for images); same shape back.

    Runs on the tokenizer's device and dtype. With ``exact_rounds``, the rounds after the first
    ``exact_rounds`` are random before decoding (:func:`randomize_rounds`, drawn with ``generator``).
    """
    codes = tokenizer.encode(to_pixels(tokenizer, frames))
    if exact_rounds is not None:
        codes = randomize_rounds(codes, exact_rounds, generator)
    decoded = tokenizer.decode(codes)  # (B, 3, T, H, W) in [-1, 1]
    out = ((decoded.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return rearrange(out, "b c t h w -> b t h w c").cpu().numpy()


def _in_batches(items: list[np.ndarray], tokenizer, batch_size: int, **kwargs) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        out.extend(reconstruct(tokenizer, np.stack(items[start : start + batch_size]), **kwargs))
    return out


def tokenizer_ceiling(
    tokenizer,
    num_images: int = 96,
    num_videos: int = 40,
    data_seed: int = 0,
    size: int = 64,
    num_frames: int = 9,
    batch_size: int = 16,
    exact_rounds: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """T2I and T2V checker scores of the ground-truth test renders and of their reconstructions.

    Args:
        tokenizer: an ``HBQTokenizer`` (e.g. ``model.visual_tokenizer``), evaluated as it is.
        num_images / num_videos: the first test items of ``shapes`` / ``moving-shapes`` (0 skips).
        data_seed: the worlds' dataset seed; ``size`` / ``num_frames``: the render settings.
        exact_rounds: keep only this many coarse HBQ rounds of the true codes and draw the finer
            ones at random (seeded by ``seed``): which rounds the checkers' verdicts depend on.

    Returns:
        ``{"t2i": {"ground_truth": ..., "reconstructed": ...}, "t2v": {...}}`` with the checkers'
        report dicts (a section is None when its count is 0).
    """
    if num_images < 0 or num_videos < 0 or batch_size < 1:
        raise ValueError(
            f"num_images / num_videos must be >= 0 and batch_size >= 1, got {num_images}, {num_videos}, "
            f"{batch_size}"
        )
    report: dict[str, Any] = {"t2i": None, "t2v": None, "exact_rounds": exact_rounds}
    noise = {}
    if exact_rounds is not None:
        noise = {"exact_rounds": exact_rounds, "generator": torch.Generator().manual_seed(seed)}
    if num_images:
        examples = [make_shapes_example(data_seed, i, size=size, split="test") for i in range(num_images)]
        frames = [np.asarray(e["image"].convert("RGB"))[None] for e in examples]  # (1, H, W, 3) each
        captions = [e["text"] for e in examples]
        recon = [f[0] for f in _in_batches(frames, tokenizer, batch_size, **noise)]
        report["t2i"] = {
            "ground_truth": evaluate_t2i(zip([f[0] for f in frames], captions)).to_dict(),
            "reconstructed": evaluate_t2i(zip(recon, captions)).to_dict(),
        }
        logger.info("T2I ceiling: %s", report["t2i"]["reconstructed"])
    if num_videos:
        clips = [
            make_moving_shapes_example(data_seed, i, size=size, num_frames=num_frames, split="test")
            for i in range(num_videos)
        ]
        videos = [c["video"] for c in clips]  # (T, H, W, 3) uint8 each
        captions = [c["text"] for c in clips]
        report["t2v"] = {
            "ground_truth": evaluate_t2v(zip(videos, captions)).to_dict(),
            "reconstructed": evaluate_t2v(
                zip(_in_batches(videos, tokenizer, batch_size, **noise), captions)
            ).to_dict(),
        }
        logger.info("T2V ceiling: %s", report["t2v"]["reconstructed"])
    return report
