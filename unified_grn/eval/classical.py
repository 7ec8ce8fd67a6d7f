"""Classical codecs at the bit budget of an HBQ tokenizer: what a learned tokenizer must beat.

An HBQ tokenizer stores ``T' * H' * W' * C * M`` bits per image or clip (latent grid, ``C``
channels, ``M`` HBQ rounds; GRN paper Sec. 3.1): :func:`hbq_bit_budget`. Two classical codecs
are measured against the same budget (``shared/research/data_eval_offline.md`` Sec. 5 (a)):

- **downsample + quantize + bicubic**: area-downsample to ``k x k``, quantize every channel
  value uniformly to ``b`` bits (``2^b`` levels over [0, 1]), upsample with bicubic
  interpolation. Exactly ``k * k * channels * b`` bits, no header (the decoder knows ``k``, ``b``).
  :func:`best_downsample_baseline` tries the budget frontier (for each ``b <= 8`` the largest
  ``k`` that fits) and keeps the best PSNR (an oracle choice, which favours the baseline).
- **JPEG** (libjpeg through Pillow, baseline, standard tables, default 4:2:0 chroma
  subsampling for RGB): the real byte count of each image, both the full file and the
  image-only (abbreviated) stream, which omits the quantization / Huffman tables a decoder could
  share (Pillow ``streamtype=2``, ~290 bytes less). :func:`jpeg_at_budget` takes the highest
  quality whose *mean image-only* size fits the budget and reports both counts.

Images are ``(N, H, W)`` grayscale or ``(N, H, W, C)`` uint8; PSNR / SSIM come from
``tokenizers_visual.metrics`` on [0, 1] (grayscale as one channel).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tokenizers_visual.metrics import psnr, ssim

__all__ = [
    "ClassicalResult",
    "best_downsample_baseline",
    "classical_baselines",
    "downsample_bits",
    "downsample_quantize",
    "hbq_bit_budget",
    "jpeg_at_budget",
    "jpeg_roundtrip",
    "score_pairs",
    "tokenizer_bit_budget",
]

logger = logging.getLogger(__name__)


@dataclass
class ClassicalResult:
    """One codec setting on one image set.

    Attributes:
        method: ``"downsample"`` or ``"jpeg"``.
        setting: human-readable setting, e.g. ``"16x16 @ 4 bit + bicubic"`` or ``"JPEG q23"``.
        bits: mean bits per image actually spent (image-only stream for JPEG).
        bits_full: JPEG only: mean bits of the full file, headers and tables included.
        psnr: mean PSNR (dB, data range 1).
        ssim: mean SSIM.
        n: number of images.
        params: the codec parameters (``k``, ``b`` or ``quality``).
    """

    method: str
    setting: str
    bits: float
    psnr: float
    ssim: float
    n: int
    bits_full: float | None = None
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def hbq_bit_budget(grid: Sequence[int], latent_channels: int, rounds: int) -> int:
    """Bits of one HBQ code: ``prod(grid) * C * M`` for a latent ``grid`` ``(T', H', W')`` or ``(H', W')``."""
    return int(np.prod(grid)) * int(latent_channels) * int(rounds)


def tokenizer_bit_budget(config, height: int, width: int, num_frames: int = 1) -> int:
    """Bits per image / clip of an ``HBQTokenizerConfig`` at ``height x width`` (and ``num_frames``).

    ``T' = 1 + (T - 1) / s_t``, ``H' = H / s``, ``W' = W / s`` (``s``: spatial stride, ``s_t``: temporal).
    """
    if config.rounds is None:
        raise ValueError("an unquantized tokenizer (rounds=None) has no bit budget")
    s, s_t = config.spatial_stride, config.temporal_stride
    if height % s or width % s or (num_frames - 1) % s_t:
        raise ValueError(f"{num_frames}x{height}x{width} does not fit strides (s_t={s_t}, s={s})")
    grid = (1 + (num_frames - 1) // s_t, height // s, width // s)
    return hbq_bit_budget(grid, config.latent_channels, config.rounds)


def _as_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float64 ``(N, C, H, W)`` in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"expected (N, H, W) or (N, H, W, C) images, got shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.float64) / 255.0).permute(0, 3, 1, 2)  # (N, C, H, W)


def score_pairs(originals: np.ndarray, reconstructions: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM of uint8 originals against uint8 arrays or ``(N, C, H, W)`` [0, 1] tensors."""
    x = _as_nchw(originals)
    y = reconstructions if isinstance(reconstructions, torch.Tensor) else _as_nchw(reconstructions)
    y = y.double().clamp(0.0, 1.0)
    return float(psnr(x, y, (0.0, 1.0)).mean()), float(ssim(x, y, (0.0, 1.0)).mean())


def downsample_bits(k: int | tuple[int, int], bits: int, channels: int, frames: int = 1) -> int:
    """Exact bits of a ``k x k`` (or ``(kh, kw)``), ``bits``-per-value, ``channels``-channel code."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return kh * kw * channels * bits * frames


def downsample_quantize(images: np.ndarray, k: int | tuple[int, int], bits: int) -> torch.Tensor:
    """Area-downsample to ``k``, quantize to ``bits`` per value, bicubic-upsample back.

    Returns:
        ``(N, C, H, W)`` float64 in [0, 1] (not rounded to uint8: the code, not the display, is scored).
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    x = _as_nchw(images)
    size = (k, k) if isinstance(k, int) else tuple(k)
    small = F.interpolate(x, size=size, mode="area")
    levels = 2**bits - 1
    small = torch.round(small * levels) / levels
    up = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)
    return up.clamp(0.0, 1.0)


def _frontier(budget_bits: int, channels: int, side: int, max_bits: int) -> list[tuple[int, int]]:
    """``(k, b)`` pairs on the budget frontier: for each ``b`` the largest ``k`` that fits (for a
    fixed ``b`` a larger ``k`` never hurts, and for a fixed ``k`` neither does a larger ``b``)."""
    best_b: dict[int, int] = {}
    for b in range(1, max_bits + 1):
        k = min(side, math.isqrt(budget_bits // (channels * b)))
        if k >= 2:
            best_b[k] = max(best_b.get(k, 0), b)
    return sorted(best_b.items())


def best_downsample_baseline(
    images: np.ndarray, budget_bits: int, sizes: Sequence[int] | None = None, max_bits: int = 8
) -> tuple[ClassicalResult, list[ClassicalResult]]:
    """The best-PSNR ``k x k @ b bit`` code within ``budget_bits``, and every candidate tried.

    Candidates: with ``sizes``, each ``k`` with the largest ``b <= max_bits`` that fits
    (``k * k * C * b <= budget_bits``); by default the budget frontier (for each ``b``, the
    largest ``k <=`` the image side that fits). The choice is by PSNR, an oracle that favours the
    baseline; SSIM (the slow part) is computed for the chosen code only (NaN elsewhere).
    """
    arr = np.asarray(images)
    channels = 1 if arr.ndim == 3 else arr.shape[-1]
    side = min(arr.shape[1:3])
    if sizes is None:
        pairs = _frontier(budget_bits, channels, side, max_bits)
    else:
        pairs = [(k, min(max_bits, budget_bits // downsample_bits(k, 1, channels))) for k in sizes]
    x = _as_nchw(arr)
    candidates = []
    for k, b in pairs:
        if b < 1:
            continue
        p = float(psnr(x, downsample_quantize(arr, k, b), (0.0, 1.0)).mean())
        bits = downsample_bits(k, b, channels)
        setting = f"{k}x{k} @ {b} bit + bicubic"
        candidates.append(
            ClassicalResult("downsample", setting, bits, p, float("nan"), len(arr), params={"k": k, "b": b})
        )
    if not candidates:
        raise ValueError(f"no downsample code fits {budget_bits} bits")
    best = max(candidates, key=lambda r: r.psnr)
    best.ssim = score_pairs(arr, downsample_quantize(arr, best.params["k"], best.params["b"]))[1]
    return best, candidates


def jpeg_roundtrip(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JPEG-encode every image at ``quality``; returns (decoded uint8, full bytes, image-only bytes)."""
    decoded, full, stream = [], [], []
    for image in np.asarray(images):
        pil = Image.fromarray(image)
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=quality)
        full.append(buf.tell())
        abbreviated = io.BytesIO()
        pil.save(abbreviated, "JPEG", quality=quality, streamtype=2)  # same scan, tables omitted
        stream.append(abbreviated.tell())
        buf.seek(0)
        with Image.open(buf) as out:
            decoded.append(np.asarray(out.convert(pil.mode)))
    return np.stack(decoded), np.asarray(full), np.asarray(stream)


def _jpeg_stream_bits(images: np.ndarray, quality: int) -> float:
    """Mean image-only JPEG size in bits at ``quality`` (encode only)."""
    sizes = []
    for image in np.asarray(images):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality, streamtype=2)
        sizes.append(buf.tell())
    return float(np.mean(sizes) * 8)


def _jpeg_result(images: np.ndarray, quality: int) -> ClassicalResult:
    decoded, full, stream = jpeg_roundtrip(images, quality)
    p, s = score_pairs(images, decoded)
    return ClassicalResult(
        "jpeg",
        f"JPEG q{quality}",
        float(stream.mean() * 8),
        p,
        s,
        len(images),
        bits_full=float(full.mean() * 8),
        params={"quality": quality},
    )


def jpeg_at_budget(images: np.ndarray, budget_bits: int) -> ClassicalResult | None:
    """JPEG at the highest quality whose mean image-only size fits ``budget_bits`` (None: not even q1).

    Binary search over quality 1..95 on the mean image-only size, which grows with quality.
    """
    if _jpeg_stream_bits(images, 1) > budget_bits:
        return None
    lo, hi = 1, 95
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _jpeg_stream_bits(images, mid) <= budget_bits:
            lo = mid
        else:
            hi = mid - 1
    return _jpeg_result(images, lo)


def classical_baselines(images: np.ndarray, budget_bits: int) -> list[ClassicalResult]:
    """The best downsample code and JPEG (when it fits) at ``budget_bits``, on uint8 ``images``."""
    best, _ = best_downsample_baseline(images, budget_bits)
    results = [best]
    jpeg = jpeg_at_budget(images, budget_bits)
    if jpeg is None:
        logger.info("JPEG does not fit %d bits even at quality 1", budget_bits)
    else:
        results.append(jpeg)
    return results
