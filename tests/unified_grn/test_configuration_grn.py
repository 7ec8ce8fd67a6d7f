"""GRNConfig, GRN_PRESETS and GRNGenerationConfig (unified_grn/configuration_grn.py)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, LlamaConfig, Qwen2Config, Qwen3Config

import unified_grn  # noqa: F401  (registers model_type "grn")
from tokenizers_visual.modeling_hbq import HBQTokenizerConfig
from unified_grn import GRN_PRESETS, GRNConfig, GRNForConditionalGeneration, GRNGenerationConfig


def _num_params(config: GRNConfig) -> int:
    with torch.device("meta"):
        model = GRNForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())


def test_every_preset_builds_with_its_table_8_shape():
    expected = {  # Table 8: depth, width, heads
        "GRN-B": (12, 768, 12),
        "GRN-L": (24, 1024, 16),
        "GRN-H": (32, 1280, 16),
        "GRN-G": (40, 1664, 16),
        "GRN-2B-T2I": (28, 2304, 18),
        "GRN-2B-T2V": (28, 2304, 18),
    }
    for name in GRN_PRESETS:
        config = GRNConfig.from_preset(name)
        tc = config.text_config
        if name in expected:
            assert (tc.num_hidden_layers, tc.hidden_size, tc.num_attention_heads) == expected[name]
        assert tc.vocab_size == config.min_backbone_vocab_size
    assert GRNConfig.from_preset("GRN-B").variant == "ind"
    assert GRNConfig.from_preset("GRN-2B-T2V").num_channels == 64


def test_cpu_preset_sizes():
    assert _num_params(GRNConfig.from_preset("GRN-tiny")) < 1_000_000
    assert 5_000_000 <= _num_params(GRNConfig.from_preset("GRN-shapes")) <= 15_000_000
    shapes = GRNConfig.from_preset("GRN-shapes")
    assert shapes.visual_tokenizer_config.spatial_stride == 8 and shapes.max_latent_grid == [3, 8, 8]
    assert 2.1e9 < _num_params(GRNConfig.from_preset("GRN-2B-T2I")) < 2.3e9  # official GRN2b: 2.198B


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="GRN-tiny") as err:
        GRNConfig.from_preset("GRN-XL")
    assert "GRN-2B-T2V" in str(err.value)


def test_channels_and_rounds_must_match_the_visual_tokenizer():
    config = GRNConfig.from_preset("GRN-tiny")
    assert (config.num_channels, config.num_rounds) == (16, 4)
    with pytest.raises(ValueError, match="latent_channels=16"):
        GRNConfig.from_preset("GRN-tiny", num_channels=8)
    with pytest.raises(ValueError, match="rounds=4"):
        GRNConfig.from_preset("GRN-tiny", num_rounds=3)
    vt = HBQTokenizerConfig.from_preset("hbq-tiny", latent_channels=4, rounds=2)
    small = GRNConfig.from_preset("GRN-tiny", visual_tokenizer_config=vt, variant="ind")
    assert small.vocab.num_hbq_tokens == 4 * 2**2


@pytest.mark.parametrize(
    "field,value", [("variant", "bits"), ("pt_distribution", "normal"), ("max_latent_grid", [1, 2])]
)
def test_bad_choices_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        GRNConfig.from_preset("GRN-tiny", **{field: value})


@pytest.mark.parametrize(
    "family,cls", [("llama", LlamaConfig), ("qwen2", Qwen2Config), ("qwen3", Qwen3Config)]
)
def test_text_config_family_override(family, cls):
    config = GRNConfig.from_preset("GRN-tiny", text_config={"model_type": family})
    assert isinstance(config.text_config, cls) and config.text_config.hidden_size == 64


def test_save_load_keeps_the_final_vocab_size(tmp_path):
    config = GRNConfig.from_preset("GRN-shapes", variant="ind")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["text_config"]["vocab_size"] == config.text_config.vocab_size == 320
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, GRNConfig) and isinstance(loaded.visual_tokenizer_config, HBQTokenizerConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()


def test_vocab_is_raised_to_hold_the_special_tokens():
    config = GRNConfig(text_config={"model_type": "llama", "vocab_size": 100}, num_class_tokens=70)
    assert config.text_config.vocab_size == 384  # 259 + 4 + 70 = 333 -> multiple of 64
    assert config.vocab.class_token_id(69) == 332


def test_generation_config_round_trip(tmp_path):
    config = GRNConfig.from_preset("GRN-shapes")
    gen = GRNGenerationConfig.from_grn_config(config, num_steps=20, guidance_scale=2.0)
    assert (gen.height, gen.width, gen.num_frames) == (64, 64, 1)
    gen.save_pretrained(tmp_path)
    loaded = GRNGenerationConfig.from_pretrained(tmp_path)
    assert (loaded.num_steps, loaded.guidance_scale, loaded.temperature, loaded.schedule) == (
        20,
        2.0,
        1.0,
        "cosine",
    )
