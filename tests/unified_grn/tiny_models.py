"""Seeded tiny models shared by the unified_grn tests (imported by test files and conftest)."""

from __future__ import annotations

import torch

from tokenizers_visual import HBQTokenizer, HBQTokenizerConfig
from unified_grn import AutoModelForGRN, GRNConfig


def build_tiny_grn(
    variant: str = "bit", seed: int = 0, attn: str = "sdpa", visual_tokenizer: bool = True, **config_kwargs
):
    """GRN-tiny with weights seeded by ``seed`` in eval mode; with ``visual_tokenizer`` a fixed
    (untrained, seeded by ``seed + 1``) hbq-tiny tokenizer attached, so generation can decode."""
    torch.manual_seed(seed)
    config = GRNConfig.from_preset("GRN-tiny", variant=variant, **config_kwargs)
    model = AutoModelForGRN.from_config(config, attn_implementation=attn).eval()
    if visual_tokenizer:
        torch.manual_seed(seed + 1)
        model.visual_tokenizer = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny")).eval()
    return model
