"""The backbone cache argument across transformers releases (unified_grn/utils/cache_compat.py)."""

from __future__ import annotations

import logging
import warnings

import torch
from tiny_models import build_tiny_grn

from unified_grn.utils.cache_compat import cache_kwargs, output_cache


class _NewStyle(torch.nn.Module):
    def forward(self, inputs_embeds=None, cache=None, use_cache=None):
        return {"cache": cache}


class _OldStyle(torch.nn.Module):
    def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None):
        return {"past_key_values": past_key_values}


class _OldOutput:
    def __init__(self, kv):
        self.past_key_values = kv


def test_the_name_follows_the_backbone_signature():
    kv = object()
    assert cache_kwargs(_NewStyle(), kv) == {"cache": kv}
    assert cache_kwargs(_OldStyle(), kv) == {"past_key_values": kv}
    assert output_cache(_NewStyle()(cache=kv)) is kv
    assert output_cache(_OldOutput(kv)) is kv


def test_cached_generation_and_chat_raise_no_deprecation(caplog):
    model = build_tiny_grn(seed=0).eval()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        model.generate("x", num_steps=2, height=16, width=16, seed=0, progress_bar=False)
        model.chat([{"role": "user", "content": "x"}], max_new_tokens=2, seed=0)
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()], caplog.text
