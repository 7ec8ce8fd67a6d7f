"""Auto-class registration, save/load and from_backbone (unified_grn/auto.py, loading.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor, ViTConfig, ViTModel

from tokenizers_visual.modeling_hbq import HBQTokenizer, HBQTokenizerConfig
from unified_grn import AutoModelForGRN, GRNConfig, GRNForConditionalGeneration, GRNProcessor
from unified_grn.text_tokenizer import build_byte_tokenizer


def _logits(model, prompts=("a red circle", None)):
    codes = torch.randint(
        0, 2, (len(prompts), 1, 2, 2, 16, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    with torch.no_grad():
        cache = model.encode_prompt(*model.prepare_prompts(list(prompts)))
        return model.visual_logits_from_cache(cache, codes, 0.5)


def test_from_config_is_complete_and_usable():
    model = AutoModelForGRN.from_config(GRNConfig.from_preset("GRN-tiny"))
    assert isinstance(model, GRNForConditionalGeneration)
    ids = model.text_tokenizer("red", add_special_tokens=False)["input_ids"]
    assert model.text_tokenizer.decode(ids) == "red"
    assert isinstance(model.visual_tokenizer, HBQTokenizer)
    assert model.visual_tokenizer.config.latent_channels == model.config.num_channels
    assert _logits(model).shape == (2, 4, 64, 2)


def test_save_and_load_restore_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = AutoModelForGRN.from_config(GRNConfig.from_preset("GRN-tiny", variant="ind")).eval()
    model.generation_config.num_steps = 12
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
    } <= names
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "visual_tokenizer").iterdir()}
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert {"height", "width", "num_frames", "num_steps", "guidance_scale", "temperature"} <= gen.keys()

    loaded = AutoModelForGRN.from_pretrained(tmp_path)
    assert isinstance(loaded, GRNForConditionalGeneration) and loaded.generation_config.num_steps == 12
    assert loaded.config.text_config.vocab_size == model.config.text_config.vocab_size
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=0, rtol=0)
    for key, value in model.visual_tokenizer.state_dict().items():
        assert torch.equal(loaded.visual_tokenizer.state_dict()[key], value)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GRNConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), GRNForConditionalGeneration)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, GRNProcessor) and processor.spatial_stride == 8


def test_loading_refuses_pickled_weights(tmp_path):
    model = AutoModelForGRN.from_config(GRNConfig.from_preset("GRN-tiny"))
    model.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError):
        AutoModelForGRN.from_pretrained(tmp_path)


def _save_causal_lm(folder, family: str, tie: bool) -> None:
    config = AutoConfig.for_model(
        family,
        vocab_size=259,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    build_byte_tokenizer().save_pretrained(folder)


@pytest.mark.parametrize("family,tie", [("llama", False), ("qwen2", True)])
def test_from_backbone_wraps_a_local_causal_lm(tmp_path, family, tie):
    _save_causal_lm(tmp_path / "lm", family, tie)
    original = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    vt = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny"))
    model = GRNForConditionalGeneration.from_backbone(
        tmp_path / "lm", visual_tokenizer=vt, num_class_tokens=3
    )
    vocab = model.vocab
    assert model.config.text_config.vocab_size == 320 and model.visual_tokenizer is vt
    assert model.config.text_config._attn_implementation == original.config._attn_implementation
    assert model.text_tokenizer.convert_tokens_to_ids("<|image_start|>") == vocab.image_start_id
    old = original.get_input_embeddings().weight.detach()
    assert torch.equal(model.get_input_embeddings().weight[: old.shape[0]], old)  # pretrained rows kept
    assert model.config.visual_init_std == pytest.approx(float(old.pow(2).mean().sqrt()))
    model.save_pretrained(tmp_path / "grn")
    loaded = AutoModelForGRN.from_pretrained(tmp_path / "grn")
    assert loaded.config.text_config.vocab_size == 320  # no second resize
    torch.testing.assert_close(_logits(loaded), _logits(model.eval()), atol=0, rtol=0)


def test_from_backbone_rejects_a_folder_that_is_not_a_causal_lm(tmp_path):
    vit = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32
    )
    ViTModel(vit).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="not a causal language model"):
        GRNForConditionalGeneration.from_backbone(tmp_path / "vit")
    with pytest.raises(ValueError, match="no config.json"):
        GRNForConditionalGeneration.from_backbone(tmp_path / "empty")


def test_visual_tokenizer_must_match_channels_and_rounds():
    model = AutoModelForGRN.from_config(GRNConfig.from_preset("GRN-tiny"))
    with pytest.raises(ValueError, match=r"\(C, M\)=\(16, 4\)"):
        model.visual_tokenizer = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny", latent_channels=8))


def test_import_is_light():
    code = (
        "import sys, unified_grn; "
        "print(sorted(m for m in ('flash_attn', 'deepspeed', 'datasets', 'av', 'unified_grn.data') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_from_config_with_an_attention_backend_still_builds_its_visual_tokenizer(attn):
    """The LM's attn_implementation propagates to every sub-config; the convnet tokenizer ignores it."""
    torch.manual_seed(0)
    model = AutoModelForGRN.from_config(GRNConfig.from_preset("GRN-tiny"), attn_implementation=attn)
    assert isinstance(model.visual_tokenizer, HBQTokenizer)
    assert model.config._attn_implementation == attn
