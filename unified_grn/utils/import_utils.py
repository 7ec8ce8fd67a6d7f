"""Probes for optional heavy dependencies, so ``import unified_grn`` works with torch alone.

Style guide rule 12 (research/style_anchors.md): optional packages (flash-attn, DeepSpeed, PyAV)
are never imported at module level; call sites ask these functions first and fall back (SDPA for
flash-attn, GIF/numpy for video files without PyAV).
"""

from __future__ import annotations

import importlib.util
from functools import cache

import torch

__all__ = [
    "default_attn_implementation",
    "is_av_available",
    "is_deepspeed_available",
    "is_flash_attn_available",
    "is_flex_attention_available",
]


@cache
def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_flash_attn_available() -> bool:
    """flash-attn is installed and a CUDA device exists (it is GPU-only, research/env_feasibility.md Sec. 3)."""
    return _has_module("flash_attn") and torch.cuda.is_available()


def is_flex_attention_available() -> bool:
    """``torch.nn.attention.flex_attention`` exists and a CUDA device exists.

    Flex attention on CPU has no backward in torch 2.13 and crashed in our probe, so it counts as
    available only with CUDA.
    """
    return _has_module("torch.nn.attention.flex_attention") and torch.cuda.is_available()


def is_deepspeed_available() -> bool:
    return _has_module("deepspeed")


def is_av_available() -> bool:
    """PyAV (``av``), used to read and write mp4 files."""
    return _has_module("av")


def default_attn_implementation() -> str:
    """``"flash_attention_2"`` where flash-attn and CUDA exist, else ``"sdpa"`` (the fallback).

    GRN's full-sequence pass needs a 4D mask, so under flash-attn it runs that pass with SDPA and
    uses flash kernels for the prompt and the cached visual block (``modeling_grn.py``).
    """
    return "flash_attention_2" if is_flash_attn_available() else "sdpa"
