"""Reconstruction metrics for the visual tokenizer: PSNR and SSIM (the columns of GRN Tables 1-2).

Pure torch, batched, any device. Both functions take the pixel *value range* explicitly, so the
caller states the convention: ``value_range=(-1.0, 1.0)`` for this package's pixels (data range
2), ``(0.0, 1.0)`` for [0, 1], ``(0.0, 255.0)`` for uint8 values. PSNR only needs the data range
``hi - lo``; SSIM is *not* shift-invariant (its luminance term compares means), and is defined for
non-negative intensities, so it maps the inputs to ``[0, hi - lo]`` first: SSIM of [-1, 1] pixels
equals SSIM of the same images in [0, 1]. Inputs are ``(B, C, H, W)`` images or
``(B, C, T, H, W)`` videos; the result is one number per sample, ``(B,)`` float64. Videos are
scored frame by frame and the frames averaged (the usual rFVD-table convention).

SSIM follows Wang et al. (2004), "Image Quality Assessment: From Error Visibility to Structural
Similarity": an 11x11 Gaussian window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, local
statistics over the valid region only (no padding), population (not sample) covariance, the SSIM
map averaged over pixels and then over channels. This equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
channel_axis=0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_frames(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Check shapes and fold frames into the batch: returns ``(B*T, C, H, W)`` pairs and ``T``."""
    if x.shape != y.shape:
        raise ValueError(
            f"{name}: inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.dim() == 4:
        return x.double(), y.double(), 1
    if x.dim() == 5:
        b, c, t, h, w = x.shape
        fold = lambda v: v.transpose(1, 2).reshape(b * t, c, h, w).double()  # noqa: E731 - (B*T, C, H, W)
        return fold(x), fold(y), t
    raise ValueError(f"{name}: expected (B, C, H, W) or (B, C, T, H, W), got shape {tuple(x.shape)}.")


def _check_range(value_range: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(
            f"{name}: value_range must be (low, high) with high > low, e.g. (-1.0, 1.0); got {value_range}."
        )
    return lo, hi


def psnr(x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10((hi - lo)^2 / MSE)``, per sample.

    Args:
        x, y: ``(B, C, H, W)`` or ``(B, C, T, H, W)`` on the same scale.
        value_range: ``(lo, hi)`` of that scale: ``(-1.0, 1.0)`` or ``(0.0, 1.0)``.

    Returns:
        ``(B,)`` float64; ``inf`` where the inputs are identical. For videos, the mean of the
        per-frame PSNRs.
    """
    lo, hi = _check_range(value_range, "psnr")
    data_range = hi - lo
    xf, yf, frames = _as_frames(x, y, "psnr")
    mse = (xf - yf).pow(2).flatten(1).mean(dim=1)  # (B*T,)
    value = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> +inf
    return value.reshape(-1, frames).mean(dim=1)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter per channel: ``(N, C, H, W) -> (N, C, H-10, W-10)``."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Structural similarity (Wang et al., 2004), per sample.

    Args:
        x, y: ``(B, C, H, W)`` or ``(B, C, T, H, W)`` on the same scale, ``H, W >= 11``.
        value_range: ``(lo, hi)`` of that scale: ``(-1.0, 1.0)`` or ``(0.0, 1.0)``. Inputs are
            shifted by ``-lo`` (SSIM's luminance term is defined for non-negative intensities).

    Returns:
        ``(B,)`` float64 in [-1, 1]; 1.0 for identical inputs. Mean over pixels, then channels
        (then frames for videos).
    """
    lo, hi = _check_range(value_range, "ssim")
    data_range = hi - lo
    xf, yf, frames = _as_frames(x, y, "ssim")
    xf, yf = xf - lo, yf - lo
    if min(xf.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim: images must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(xf.shape[-2:])}."
        )
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, xf.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(xf, g), _blur(yf, g)
    var_x = _blur(xf * xf, g) - mu_x.pow(2)
    var_y = _blur(yf * yf, g) - mu_y.pow(2)
    cov = _blur(xf * yf, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2)
    per_channel = (num / den).mean(dim=(2, 3))  # (B*T, C)
    return per_channel.mean(dim=1).reshape(-1, frames).mean(dim=1)
