"""Building, saving and loading a GRN model's parts: backbone, tokenizers, extras.

A saved GRN folder (``GRNForConditionalGeneration.save_pretrained``)::

    config.json                GRNConfig (text_config at its final vocab size, visual_tokenizer_config)
    generation_config.json     GRNGenerationConfig (sampling defaults)
    model.safetensors          backbone + GRN visual modules (never pickle)
    tokenizer.json, tokenizer_config.json, processor_config.json   text tokenizer + GRNProcessor
    visual_tokenizer/          the HBQTokenizer (config.json + model.safetensors)

``from_backbone`` wraps a causal LM saved in a local folder: it adds GRN's special tokens to its
tokenizer, resizes the embeddings once if they are too small (mean-resizing), and starts the HBQ
input rows at the RMS of the pretrained text embedding.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from tokenizers_visual.modeling_hbq import HBQ_TOKENIZER_PRESETS, HBQTokenizer, HBQTokenizerConfig
from unified_grn.configuration_grn import GRNConfig, GRNGenerationConfig
from unified_grn.text_tokenizer import BYTE_VOCAB_SIZE, add_grn_special_tokens, build_byte_tokenizer
from unified_grn.vocab import IMAGE_START, GRNVocab

__all__ = [
    "build_backbone",
    "build_visual_tokenizer",
    "checked_text_tokenizer",
    "checked_visual_tokenizer",
    "default_text_tokenizer",
    "embedding_rms",
    "from_backbone",
    "load_extras",
    "load_visual_tokenizer",
    "save_extras",
]

logger = logging.getLogger(__name__)
VISUAL_TOKENIZER_DIR = "visual_tokenizer"


def _require_causal_lm(text_config, where: str) -> None:
    if type(text_config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(
            f"{where} is a {type(text_config).__name__} (model_type {text_config.model_type!r}), not a causal "
            "language model; GRN needs a config with an AutoModelForCausalLM class (e.g. llama, qwen2, qwen3)."
        )


def build_backbone(text_config) -> PreTrainedModel:
    """A randomly initialised causal LM for ``text_config`` (its final vocab size)."""
    _require_causal_lm(text_config, "text_config")
    return AutoModelForCausalLM.from_config(text_config)


def default_text_tokenizer(vocab: GRNVocab):
    if vocab.base_vocab_size != BYTE_VOCAB_SIZE:
        raise ValueError(
            f"this GRN model was built for a text tokenizer with {vocab.base_vocab_size} ids (not the "
            f"{BYTE_VOCAB_SIZE}-id byte-level default); pass text_tokenizer= or load its saved folder."
        )
    return add_grn_special_tokens(build_byte_tokenizer(), vocab)


def checked_text_tokenizer(tokenizer, vocab: GRNVocab):
    """``tokenizer`` with GRN's special tokens at ``vocab``'s ids (added in place if missing)."""
    return add_grn_special_tokens(tokenizer, vocab)


def build_visual_tokenizer(config: HBQTokenizerConfig) -> HBQTokenizer:
    # The tokenizer is a convnet: an attention backend chosen for the LM (propagated by
    # transformers into every sub-config, e.g. from_config(..., attn_implementation="sdpa")) does
    # not apply to it, and PreTrainedModel would refuse one it does not declare.
    config = copy.deepcopy(config)
    config._attn_implementation = None
    return HBQTokenizer(config).eval()


def checked_visual_tokenizer(tokenizer: HBQTokenizer, config: GRNConfig) -> HBQTokenizer:
    if not isinstance(tokenizer, HBQTokenizer):
        raise TypeError(f"visual_tokenizer must be an HBQTokenizer, got {type(tokenizer).__name__}.")
    got = (tokenizer.config.latent_channels, tokenizer.config.rounds)
    if got != (config.num_channels, config.num_rounds):
        raise ValueError(
            f"visual tokenizer has (C, M)={got}, this GRN model expects "
            f"(C, M)=({config.num_channels}, {config.num_rounds})."
        )
    return tokenizer


def save_extras(model, save_directory: str | Path) -> None:
    """Everything ``save_pretrained`` writes besides weights and config.json."""
    folder = Path(save_directory)
    model.generation_config.save_pretrained(folder)
    model.processor.save_pretrained(folder)
    model.visual_tokenizer.save_pretrained(folder / VISUAL_TOKENIZER_DIR)


def load_extras(model, path: str | Path, text_tokenizer=None, visual_tokenizer=None) -> None:
    """Attach the tokenizers and generation config saved next to the weights (local folders)."""
    folder = Path(path)
    if text_tokenizer is not None:
        model.text_tokenizer = text_tokenizer
    elif (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
        model.text_tokenizer = AutoTokenizer.from_pretrained(folder)
    if visual_tokenizer is not None:
        model.visual_tokenizer = visual_tokenizer
    elif (folder / VISUAL_TOKENIZER_DIR / "config.json").is_file():
        vt = HBQTokenizer.from_pretrained(folder / VISUAL_TOKENIZER_DIR, use_safetensors=True)
        model.visual_tokenizer = vt.eval()
    if (folder / "generation_config.json").is_file():
        model.generation_config = GRNGenerationConfig.from_pretrained(folder)


def _resolve_visual_tokenizer(visual_tokenizer: Any) -> tuple[HBQTokenizerConfig, HBQTokenizer | None]:
    """An HBQTokenizer, its config, a preset name or a local folder -> (config, model or None)."""
    if visual_tokenizer is None:
        return HBQTokenizerConfig(), None
    if isinstance(visual_tokenizer, HBQTokenizer):
        return visual_tokenizer.config, visual_tokenizer
    if isinstance(visual_tokenizer, HBQTokenizerConfig):
        return visual_tokenizer, None
    if isinstance(visual_tokenizer, str) and visual_tokenizer in HBQ_TOKENIZER_PRESETS:
        return HBQTokenizerConfig.from_preset(visual_tokenizer), None
    if Path(visual_tokenizer).is_dir():
        vt = HBQTokenizer.from_pretrained(visual_tokenizer, use_safetensors=True).eval()
        return vt.config, vt
    raise ValueError(
        f"visual_tokenizer must be an HBQTokenizer, an HBQTokenizerConfig, a preset name "
        f"({sorted(HBQ_TOKENIZER_PRESETS)}) or a local folder; got {visual_tokenizer!r}."
    )


def _load_text_tokenizer(folder: Path, text_tokenizer):
    if text_tokenizer is not None:
        return text_tokenizer
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder} has no loadable text tokenizer; pass text_tokenizer=...") from err


def _base_vocab_size(tokenizer) -> int:
    """Text ids before GRN's specials (a tokenizer saved with a GRN model already holds them)."""
    if IMAGE_START in tokenizer.get_vocab():
        return tokenizer.convert_tokens_to_ids(IMAGE_START)
    return len(tokenizer)


def _fit_backbone(backbone: PreTrainedModel, vocab_size: int) -> None:
    """Resize the embeddings once (mean-resizing) if too small; mark the weights as initialised."""
    rows = backbone.get_input_embeddings().weight.shape[0]
    if rows < vocab_size:
        logger.info("resizing the backbone embeddings %d -> %d", rows, vocab_size)
        backbone.resize_token_embeddings(vocab_size, mean_resizing=True)
    for (
        module
    ) in backbone.modules():  # loaded (or mean-resized) weights: GRN's post_init must not re-init them
        module._is_hf_initialized = True


def embedding_rms(weight: torch.Tensor) -> float:
    """Root-mean-square of an embedding matrix: the scale GRN's visual inputs start at.

    Under DeepSpeed ZeRO-3 (a backbone loaded with ``HfDeepSpeedConfig`` active) each rank holds only
    a shard and the parameter itself is empty; it is gathered for the statistic (every rank must call
    this, as every rank builds the model).
    """
    gather = contextlib.nullcontext()
    if getattr(weight, "ds_numel", None) is not None and weight.numel() != weight.ds_numel:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters([weight], modifier_rank=None)
    with gather:
        return float(weight.detach().float().pow(2).mean().sqrt())


def from_backbone(cls, path: str | Path, visual_tokenizer=None, text_tokenizer=None, **kwargs):
    """Build ``cls`` (a GRN model class) around the causal LM saved in the local folder ``path``.

    Args:
        path: folder with ``config.json``, weights and (unless ``text_tokenizer`` is given) a tokenizer.
        visual_tokenizer: ``HBQTokenizer``, ``HBQTokenizerConfig``, HBQ preset name or local folder;
            None = the default ``HBQTokenizerConfig`` (untrained tokenizer built on demand).
        text_tokenizer: overrides the folder's tokenizer.
        **kwargs: ``dtype`` and ``attn_implementation`` go to the backbone's ``from_pretrained``;
            everything else to :class:`GRNConfig` (``variant``, ``num_class_tokens``, ...).
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is not a local model folder (no config.json); from_backbone needs a saved causal LM."
        )
    try:
        folder_config = AutoConfig.from_pretrained(folder)
    except ValueError as err:  # an unknown model_type
        raise ValueError(
            f"{folder} does not hold a causal language model transformers can load: {err}"
        ) from err
    _require_causal_lm(folder_config, f"the model in {folder}")
    load_kwargs = {k: kwargs.pop(k) for k in ("dtype", "attn_implementation") if k in kwargs}
    tokenizer = _load_text_tokenizer(folder, text_tokenizer)
    vt_config, vt_model = _resolve_visual_tokenizer(visual_tokenizer)
    backbone = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs)
    embedding = backbone.get_input_embeddings().weight
    if "visual_init_std" not in kwargs:
        kwargs["visual_init_std"] = embedding_rms(embedding)
    config = GRNConfig(
        text_config=backbone.config,
        visual_tokenizer_config=vt_config,
        base_vocab_size=_base_vocab_size(tokenizer),
        # GRNConfig sets attn_implementation on its sub-configs: keep the backbone's.
        attn_implementation=backbone.config._attn_implementation,
        **kwargs,
    )
    _fit_backbone(backbone, config.text_config.vocab_size)
    with torch.device(embedding.device):
        model = cls(config, backbone=backbone, text_tokenizer=tokenizer, visual_tokenizer=vt_model)
    return model.to(embedding.dtype)


def load_visual_tokenizer(path: str | Path) -> HBQTokenizer:
    """An :class:`HBQTokenizer` in eval mode from its own folder (``config.json`` with ``model_type``
    ``hbq_tokenizer``) or from a GRN model folder (its ``visual_tokenizer/`` subfolder)."""
    folder = Path(path)
    for candidate in (folder, folder / "visual_tokenizer"):
        config = candidate / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("model_type") == "hbq_tokenizer":
            return HBQTokenizer.from_pretrained(str(candidate), use_safetensors=True).eval()
    raise ValueError(
        f"{folder} is neither an HBQ tokenizer folder (config.json with model_type 'hbq_tokenizer') "
        "nor a GRN model folder with visual_tokenizer/."
    )
