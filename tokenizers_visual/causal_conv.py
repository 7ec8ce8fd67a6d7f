"""Causal building blocks of the 3D causal VAE (``causal_vae.py``): the chunk cache, per-frame
application, the per-frame RMS norm and the causal 3D convolution.

GRN paper Sec. 3.1 / 4.1 (the Wan 2.1 causal encoder/decoder the tokenizer adopts). Every temporal
operation here is causal (past-only padding) and every normalisation is per frame, so a video can be
processed in chunks: a :class:`CausalCache` carries what the next chunk needs (``causal_vae``'s
module docstring has the conventions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["PADDING_MODES", "CausalCache", "CausalConv3d", "RMSNorm3d", "is_first_chunk", "per_frame"]


PADDING_MODES = ("zeros", "replicate")


class CausalCache:
    """Per-layer state carried from one chunk of a causal pass to the next.

    Create one per encode or decode pass and pass it to every chunk in order; layers key their
    state by themselves, so the cache needs no knowledge of the network.
    """

    def __init__(self) -> None:
        self._state: dict[nn.Module, torch.Tensor] = {}

    def get(self, layer: nn.Module) -> torch.Tensor | None:
        return self._state.get(layer)

    def set(self, layer: nn.Module, value: torch.Tensor) -> None:
        self._state[layer] = value

    def __len__(self) -> int:
        return len(self._state)


def is_first_chunk(cache: CausalCache | None, layer: nn.Module) -> bool:
    """One-shot passes (no cache) and the first chunk of a chunked pass start at frame 0."""
    return cache is None or cache.get(layer) is None


def per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D op to each frame of ``x`` (B, C, T, H, W)."""
    frames = x.shape[2]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", t=frames)


class RMSNorm3d(nn.Module):
    """RMS normalisation over channels, independently at every frame and pixel (Wan's RMS_norm).

    ``F.normalize(x, dim=1) * sqrt(C) * weight``; it never mixes frames, so it is causal.
    """

    def __init__(self, channels: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.scale = math.sqrt(channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.weight.view(-1, *([1] * (x.dim() - 2)))  # (C, 1, ...) for 4D or 5D input
        return F.normalize(x, dim=1, eps=self.eps) * self.scale * gamma


class CausalConv3d(nn.Conv3d):
    """A 3D convolution padded only towards the past in time and symmetrically in space.

    The first chunk (or a one-shot pass) sees zero frames before frame 0; a chunked pass sees
    the cached last ``k_t - 1`` input frames of the previous chunk instead.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        padding_mode: str = "zeros",
    ) -> None:
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_channels, out_channels, (kt, kh, kw), padding=0)
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}.")
        self.time_pad = kt - 1
        self.space_pad = (kw // 2, kw // 2, kh // 2, kh // 2)  # F.pad order: W then H
        self.spatial_padding = padding_mode

    def update_cache(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor | None:
        """Store the last ``k_t - 1`` frames of (past + ``x``); return the past (None: zeros)."""
        past = None if cache is None else cache.get(self)
        if cache is not None:
            # The tail of (past + chunk) is right even for chunks shorter than k_t - 1.
            history = torch.cat([self._zeros_past(x) if past is None else past, x], dim=2)
            cache.set(self, history[:, :, history.shape[2] - self.time_pad :])
        return past

    def _zeros_past(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, h, w = x.shape
        return x.new_zeros(b, c, self.time_pad, h, w)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        past = self.update_cache(x, cache)
        mode = "constant" if self.spatial_padding == "zeros" else "replicate"
        if past is None and x.shape[2] == 1:
            # A lone first frame (an image) meets only the current-frame taps: a 2D conv, several
            # times faster than conv3d on CPU and equal to it.
            frame = F.pad(x[:, :, 0], self.space_pad, mode=mode)  # (B, C, H + 2p, W + 2p)
            return F.conv2d(frame, self.weight[:, :, -1], self.bias).unsqueeze(2)
        x = torch.cat([self._zeros_past(x) if past is None else past, x], dim=2)  # (B, C, k_t-1+T, H, W)
        return F.conv3d(F.pad(x, (*self.space_pad, 0, 0), mode=mode), self.weight, self.bias)
