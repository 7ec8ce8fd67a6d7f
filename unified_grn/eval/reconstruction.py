"""Reconstruction summary for the visual tokenizer: PSNR, SSIM and LPIPS over (original, reconstruction) pairs.

A thin layer over ``tokenizers_visual.metrics`` (``psnr``, ``ssim``: Wang et al. 2004, equal to
scikit-image's) and ``tokenizers_visual.lpips`` (LPIPS-VGG, Zhang et al. 2018), which stay the
single implementations. Inputs are images or videos as uint8 arrays / PIL images, or float tensors
with their value range; everything is scored in [0, 1] (LPIPS in [-1, 1], its convention).

LPIPS needs ImageNet VGG16 weights that cannot be downloaded here: without them the backbone is
random (seeded) and the number is *not* comparable with published LPIPS. The report then says so
in ``lpips_note`` ("uncalibrated: random VGG backbone ..."), and anything that prints an LPIPS
number must print that note beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from tokenizers_visual.lpips import UNCALIBRATED_NOTE, build_lpips
from tokenizers_visual.metrics import psnr, ssim

__all__ = ["ReconstructionReport", "lpips_calibration_note", "reconstruction_metrics", "to_unit_tensor"]

logger = logging.getLogger(__name__)

ImageLike = np.ndarray | Image.Image


@dataclass
class ReconstructionReport:
    """Means over the pairs (videos: per-frame values averaged per clip first).

    Attributes:
        psnr: mean PSNR in dB (``inf`` if some pair is identical).
        ssim: mean SSIM.
        lpips: mean LPIPS distance, or None when not computed.
        lpips_calibrated: whether the LPIPS weights are the published ones (None: not computed).
        lpips_note: what an uncalibrated LPIPS number is ("uncalibrated: ..."), else None.
        n: number of pairs.
    """

    psnr: float
    ssim: float
    lpips: float | None
    lpips_calibrated: bool | None
    lpips_note: str | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _one_to_array(x: ImageLike) -> np.ndarray:
    if isinstance(x, Image.Image):
        return np.asarray(x.convert("RGB"))
    return np.asarray(x)


def to_unit_tensor(
    items: Sequence[ImageLike] | np.ndarray | torch.Tensor, value_range: tuple[float, float] = (0.0, 255.0)
) -> torch.Tensor:
    """Images ``(H, W, 3)`` / videos ``(T, H, W, 3)`` to float64 in [0, 1], channels first.

    Args:
        items: a sequence (or stacked array) of uint8 / float images or videos, PIL images, or a
            tensor already laid out ``(B, C, H, W)`` / ``(B, C, T, H, W)``.
        value_range: the pixel scale of arrays and tensors: ``(0, 255)`` for uint8 (the default
            for arrays), ``(0, 1)`` or ``(-1, 1)`` for floats. PIL images are always 0-255.

    Returns:
        ``(B, 3, H, W)`` for images or ``(B, 3, T, H, W)`` for videos.
    """
    lo, hi = value_range
    if isinstance(items, torch.Tensor):
        return ((items.double() - lo) / (hi - lo)).clamp(0.0, 1.0)
    if not isinstance(items, np.ndarray) and any(isinstance(x, Image.Image) for x in items):
        lo, hi = 0.0, 255.0
    arr = np.stack([_one_to_array(x) for x in items]).astype(np.float64)  # (B, [T,] H, W, 3)
    t = torch.from_numpy((arr - lo) / (hi - lo)).clamp(0.0, 1.0)
    if t.dim() == 4:
        return t.permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
    if t.dim() == 5:
        return t.permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W)
    raise ValueError(f"expected images (H, W, 3) or videos (T, H, W, 3), got a stack of shape {arr.shape}")


def lpips_calibration_note(model: nn.Module) -> tuple[bool | None, str | None]:
    """``(is_calibrated, note)`` for an LPIPS module from ``tokenizers_visual.lpips.build_lpips``."""
    calibrated = getattr(model, "is_calibrated", None)
    if calibrated is None:
        return None, "uncalibrated: unknown LPIPS module (no is_calibrated attribute)"
    if calibrated:
        return True, None
    if not getattr(model, "backbone_loaded", False):
        return False, f"uncalibrated: {UNCALIBRATED_NOTE}"
    return False, "uncalibrated: random LPIPS linear weights (pip install --no-deps lpips)"


@torch.no_grad()
def reconstruction_metrics(
    originals: Sequence[ImageLike] | np.ndarray | torch.Tensor,
    reconstructions: Sequence[ImageLike] | np.ndarray | torch.Tensor,
    value_range: tuple[float, float] = (0.0, 255.0),
    lpips: bool | nn.Module = True,
    batch_size: int = 32,
) -> ReconstructionReport:
    """PSNR / SSIM / LPIPS means over pairs.

    Args:
        originals, reconstructions: the pairs, in the same layout (see ``to_unit_tensor``).
        value_range: pixel scale of arrays / tensors (uint8 ``(0, 255)`` by default).
        lpips: True builds ``tokenizers_visual.lpips.build_lpips()`` (random VGG backbone unless
            the lpips package and its weights are usable), a module is used as given, False skips.
        batch_size: pairs per LPIPS forward pass.
    """
    x = to_unit_tensor(originals, value_range)
    y = to_unit_tensor(reconstructions, value_range)
    if x.shape != y.shape:
        raise ValueError(f"originals {tuple(x.shape)} and reconstructions {tuple(y.shape)} differ in shape")
    p = psnr(x, y, (0.0, 1.0))
    s = ssim(x, y, (0.0, 1.0))
    value, calibrated, note = None, None, None
    if lpips is not False:
        model = build_lpips() if lpips is True else lpips
        calibrated, note = lpips_calibration_note(model)
        dists = [
            model(x[i : i + batch_size].float() * 2 - 1, y[i : i + batch_size].float() * 2 - 1)
            for i in range(0, len(x), batch_size)
        ]
        value = float(torch.cat(dists).mean())
        if note:
            logger.info("LPIPS %.4f is %s", value, note)
    return ReconstructionReport(float(p.mean()), float(s.mean()), value, calibrated, note, len(x))
