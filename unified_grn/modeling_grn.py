"""The unified GRN model: an unmodified HF causal LM that reads text and refines HBQ tokens.

GRN paper (Han et al., 2026, arXiv 2604.13030) Sec. 3.2: Eq. 4 (``F_t`` mixes ground-truth and
random labels), Eq. 5 (``p(Y) = Phi(F_t, cond)``), Eq. 7 (cross-entropy on every visual token),
Alg. 2 (the training step). The backbone is built with ``AutoModelForCausalLM`` and driven only
through ``inputs_embeds``; GRN's modules (``visual_embedding.py``) sit around it. Ids and label
layout: ``vocab.py``. Batch layout: ``collator.py``. Masks: ``attention_masks.py``.

Two ways to run a visual block:

* the **full sequence** (training): one pass over ``[prompt, block, ...]`` with a 4D float mask
  (causal text, bidirectional blocks), for eager / SDPA / flex attention;
* the **prefix cache** (sampling): :meth:`encode_prompt` runs the prompt once with
  ``use_cache=True``; :meth:`visual_logits_from_cache` runs the block as queries against it with
  explicit position ids and an all-visible mask, then crops the cache back (``crop(-V)``); both
  live in ``modeling_prefix_cache.GRNPrefixCacheMixin``.
  Under flash-attention the block runs with ``is_causal=False`` and a 2D padding mask; the full
  sequence path then falls back to SDPA (flash kernels cannot take the 4D mask).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from unified_grn import loading, objective
from unified_grn.attention_masks import build_visibility, to_additive_mask
from unified_grn.configuration_grn import GRNConfig, GRNGenerationConfig
from unified_grn.generation import GRNGenerationMixin
from unified_grn.modeling_outputs import GRNOutput, GRNPromptCache, VisualInputs
from unified_grn.modeling_prefix_cache import GRNPrefixCacheMixin
from unified_grn.visual_embedding import GRNHBQHead, GRNVisualEmbedding, HBQInputRows
from unified_grn.vocab import GRNVocab

__all__ = ["GRNForConditionalGeneration", "GRNOutput", "GRNPreTrainedModel", "GRNPromptCache"]

logger = logging.getLogger(__name__)
IGNORE_INDEX = -100


class GRNPreTrainedModel(PreTrainedModel):
    config_class = GRNConfig
    base_model_prefix = "grn"
    main_input_name = "input_ids"
    input_modalities = ["text", "image", "video"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, HBQInputRows):
            init.normal_(module.weight, mean=0.0, std=self.config.visual_init_std or std)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)


class GRNForConditionalGeneration(GRNGenerationMixin, GRNPrefixCacheMixin, GRNPreTrainedModel):
    """GRN on a causal-LM backbone: text in, text or HBQ image/video codes out.

    Args:
        config: the :class:`GRNConfig`.
        backbone: an already built causal LM (``from_backbone``); default builds one from
            ``config.text_config``.
        text_tokenizer: the text tokenizer; default: the offline byte-level one, made on demand.
        visual_tokenizer: an ``HBQTokenizer``; default: built (untrained) from
            ``config.visual_tokenizer_config`` on first use.
    """

    def __init__(
        self,
        config: GRNConfig,
        backbone: PreTrainedModel | None = None,
        text_tokenizer=None,
        visual_tokenizer=None,
    ):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else loading.build_backbone(config.text_config)
        weight = self.backbone.get_input_embeddings().weight
        rows = getattr(weight, "ds_shape", weight.shape)[0]  # ZeRO-3 partitions: ds_shape is the full shape
        if rows != config.text_config.vocab_size:
            raise ValueError(
                f"backbone has {rows} embedding rows, config expects {config.text_config.vocab_size}."
            )
        self.vocab: GRNVocab = config.vocab
        hidden = config.text_config.hidden_size
        self.visual_embed = GRNVisualEmbedding(
            self.vocab, hidden, config.max_latent_grid, config.pt_frequency_dim
        )
        self.hbq_head = GRNHBQHead(self.vocab, hidden)
        # Tokenizers are not submodules: their weights are saved apart (visual_tokenizer/).
        self.__dict__["_text_tokenizer"] = None
        self.__dict__["_visual_tokenizer"] = None
        if text_tokenizer is not None:
            self.text_tokenizer = text_tokenizer
        if visual_tokenizer is not None:
            self.visual_tokenizer = visual_tokenizer
        self.generation_config = GRNGenerationConfig.from_grn_config(config)
        self.post_init()

    # ------------------------------------------------------------------ components
    @property
    def language_model(self) -> nn.Module:
        """The backbone's decoder (``model.model`` of an ``XForCausalLM``)."""
        return self.backbone.base_model

    @property
    def lm_head(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    def resize_token_embeddings(self, *args, **kwargs):
        raise NotImplementedError(
            "a GRN model is built at its final vocabulary size; build it with "
            "GRNForConditionalGeneration.from_backbone(...) to extend a pretrained LM."
        )

    def __setattr__(self, name: str, value) -> None:
        # nn.Module would register an HBQTokenizer as a submodule; route it to the property instead.
        if name in ("text_tokenizer", "visual_tokenizer"):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def text_tokenizer(self):
        if self._text_tokenizer is None:
            self.__dict__["_text_tokenizer"] = loading.default_text_tokenizer(self.vocab)
        return self._text_tokenizer

    @text_tokenizer.setter
    def text_tokenizer(self, tokenizer) -> None:
        self.__dict__["_text_tokenizer"] = loading.checked_text_tokenizer(tokenizer, self.vocab)

    @property
    def visual_tokenizer(self):
        if self._visual_tokenizer is None:
            logger.warning(
                "no visual tokenizer was given: building an untrained one from visual_tokenizer_config"
            )
            self.__dict__["_visual_tokenizer"] = loading.build_visual_tokenizer(
                self.config.visual_tokenizer_config
            )
        return self._visual_tokenizer

    @visual_tokenizer.setter
    def visual_tokenizer(self, tokenizer) -> None:
        self.__dict__["_visual_tokenizer"] = loading.checked_visual_tokenizer(tokenizer, self.config)

    @property
    def processor(self):
        """A :class:`~unified_grn.processing_grn.GRNProcessor` for this model's tokenizers."""
        from unified_grn.processing_grn import GRNProcessor

        return GRNProcessor.from_model(self)

    # ------------------------------------------------------------------ checks
    def _check_positions(self, last_position: int) -> None:
        limit = self.config.text_config.max_position_embeddings
        if last_position + 1 > limit:
            raise ValueError(
                f"the sequence needs {last_position + 1} positions but the backbone has "
                f"max_position_embeddings={limit}; shorten the prompt or generate a smaller grid."
            )

    def _check_grid(self, grid: Sequence[int]) -> None:
        limit = self.config.max_latent_grid
        if len(grid) != 3 or any(g > m or g < 1 for g, m in zip(grid, limit)):
            raise ValueError(
                f"latent grid (T', H', W')={tuple(int(g) for g in grid)} exceeds this model's "
                f"max_latent_grid={tuple(limit)}; generate at most that size."
            )

    # ------------------------------------------------------------------ backbone
    @contextlib.contextmanager
    def _full_sequence_attention(self) -> Iterator[None]:
        """Flash kernels cannot take a 4D mask: run the full-sequence pass with SDPA instead."""
        text_config = self.config.text_config
        current = text_config._attn_implementation
        if current is None or not current.startswith("flash"):
            yield
            return
        text_config._attn_implementation = "sdpa"
        try:
            yield
        finally:
            text_config._attn_implementation = current

    def _uses_flash(self) -> bool:
        impl = self.config.text_config._attn_implementation
        return impl is not None and impl.startswith("flash")

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone.get_input_embeddings()(input_ids)

    def _embed(
        self, input_ids: torch.Tensor, block_ids: torch.Tensor, visual: VisualInputs | None
    ) -> torch.Tensor:
        """Text embeddings with the visual positions replaced by GRN's visual embeddings."""
        embeds = self.embed_text(input_ids)  # (B, L, D)
        if visual is not None and visual.inputs.shape[0] > 0:
            pt = visual.kept_fraction[visual.block_index]  # (N,)
            vis = self.visual_embed(visual.inputs, visual.coords, pt).to(embeds.dtype)  # (N, D)
            return embeds.masked_scatter((block_ids > 0)[..., None], vis)
        # No visual position: still run the visual modules (zero weight) so every rank's
        # ZeRO-3 hooks fire for the same modules on every step.
        k = self.vocab.num_slots
        dummy_labels = torch.zeros(1, k, dtype=torch.long, device=embeds.device)
        dummy_coords = torch.zeros(1, 3, dtype=torch.long, device=embeds.device)
        dummy = self.visual_embed(dummy_labels, dummy_coords, torch.ones(1, device=embeds.device))
        return embeds + 0.0 * dummy.sum().to(embeds.dtype)

    # ------------------------------------------------------------------ visual inputs
    def _prepare_visual(
        self,
        block_ids: torch.Tensor,
        visual_codes: torch.Tensor,
        visual_coords: torch.Tensor,
        block_grid: torch.Tensor,
        block_is_target: torch.Tensor,
        visual_inputs: torch.Tensor | None,
        kept_fraction: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> VisualInputs:
        for grid in block_grid.tolist():
            self._check_grid(grid)
        return objective.prepare_visual_inputs(
            self.config,
            self.vocab,
            block_ids,
            visual_codes,
            visual_coords,
            block_is_target,
            visual_inputs,
            kept_fraction,
            generator,
        )

    # ------------------------------------------------------------------ losses
    def _visual_loss(self, hidden: torch.Tensor, block_ids: torch.Tensor, visual: VisualInputs | None):
        """Eq. 7 per target block (mean over its positions and slots), then mean over blocks.

        Returns ``(eq7_loss, logits, targets, training_term)``: the term added to ``loss`` is the
        focal- and / or round-weighted Eq. 7 when ``config.visual_focal_gamma > 0`` or
        ``config.visual_round_weights`` is set (else Eq. 7 itself), or a
        zero-weight touch of the head when no block is a target.
        """
        if visual is None or not bool(visual.is_target.any()):
            return None, None, None, 0.0 * self.hbq_head(hidden[:, :1]).sum()
        states = hidden[block_ids > 0][visual.is_target]  # (N_t, D)
        logits = self.hbq_head(states)  # (N_t, K, classes)
        targets = visual.targets[visual.is_target]  # (N_t, K)
        blocks = visual.block_index[visual.is_target]
        num_blocks = visual.kept_fraction.shape[0]
        ce = objective.slot_cross_entropy(logits, targets)  # (N_t, K), once for both terms
        loss = objective.block_mean(ce, blocks, num_blocks)
        gamma, weights = self.config.visual_focal_gamma, self.config.visual_round_weights
        term = loss
        if gamma or weights is not None:
            weighted = objective.round_weighted(
                objective.focal_weighted(ce, gamma), weights, self.config.num_rounds
            )
            term = objective.block_mean(weighted, blocks, num_blocks)
        return loss, logits, targets, term

    def _text_loss(self, hidden: torch.Tensor, text_targets: torch.Tensor | None):
        selected = text_targets != IGNORE_INDEX if text_targets is not None else None
        if selected is None or not bool(selected.any()):
            return None, None, 0.0 * self.lm_head(hidden[:, :1]).sum()
        logits = self.lm_head(hidden[selected])  # (N_x, V)
        return F.cross_entropy(logits.float(), text_targets[selected]), logits, None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        text_targets: torch.Tensor | None = None,
        block_ids: torch.Tensor | None = None,
        visual_codes: torch.Tensor | None = None,
        visual_coords: torch.Tensor | None = None,
        block_grid: torch.Tensor | None = None,
        block_is_target: torch.Tensor | None = None,
        visual_inputs: torch.Tensor | None = None,
        kept_fraction: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> GRNOutput:
        """Full-sequence pass over a :class:`~unified_grn.collator.GRNBatch` (its fields as kwargs).

        Target blocks are corrupted as in Alg. 2 (``p_t`` per block from the config's
        distribution, drawn with ``generator``) unless ``visual_inputs`` (the already mixed codes
        of every visual position, same layout as ``visual_codes``) and ``kept_fraction`` ``(G,)``
        are given. Returns a :class:`GRNOutput`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        self._check_positions(int(position_ids.max()))
        if block_ids is None:
            block_ids = torch.zeros_like(input_ids)
        visual = None
        if visual_codes is not None and visual_codes.shape[0] > 0:
            visual = self._prepare_visual(
                block_ids,
                visual_codes,
                visual_coords,
                block_grid,
                block_is_target,
                visual_inputs,
                kept_fraction,
                generator,
            )
        hidden = self._full_sequence_hidden(
            input_ids, attention_mask, position_ids, block_ids, visual, **kwargs
        )
        visual_loss, visual_logits, visual_targets, visual_term = self._visual_loss(hidden, block_ids, visual)
        text_loss, text_logits, touch_t = self._text_loss(hidden, text_targets)
        # a missing term is a zero-weight touch of its head (every parameter joins the graph, for ZeRO)
        loss = visual_term if touch_t is None else visual_term + touch_t
        if text_loss is not None:
            loss = loss + self.config.text_loss_weight * text_loss
        return GRNOutput(
            loss=loss,
            visual_loss=visual_loss,
            text_loss=text_loss,
            visual_logits=visual_logits,
            visual_targets=visual_targets,
            text_logits=text_logits,
            kept_fraction=None if visual is None else visual.kept_fraction,
        )

    def _full_sequence_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        block_ids: torch.Tensor,
        visual: VisualInputs | None,
        **kwargs,
    ) -> torch.Tensor:
        """One backbone pass over the whole sequence with the 4D mask -> ``(B, L, D)``."""
        embeds = self._embed(input_ids, block_ids, visual)
        hidden_blocks = torch.zeros_like(
            block_ids, dtype=torch.bool
        )  # target blocks: hidden from later positions
        if visual is not None:
            hidden_blocks[block_ids > 0] = visual.is_target
        mask = to_additive_mask(build_visibility(attention_mask, block_ids, hidden_blocks), embeds.dtype)
        with self._full_sequence_attention():
            out = self.language_model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=False,
                **kwargs,
            )
        return out.last_hidden_state  # (B, L, D)

    # ------------------------------------------------------------------ saving / loading
    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Weights + config.json + generation_config.json + text tokenizer + ``visual_tokenizer/``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            loading.save_extras(self, save_directory)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, *args, text_tokenizer=None, visual_tokenizer=None, **kwargs
    ):
        """Load a saved GRN folder (safetensors only) with its tokenizers and generation config."""
        kwargs.setdefault("use_safetensors", True)
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        loading.load_extras(model, pretrained_model_name_or_path, text_tokenizer, visual_tokenizer)
        return model

    @classmethod
    def from_backbone(
        cls, path, visual_tokenizer=None, text_tokenizer=None, **kwargs
    ) -> GRNForConditionalGeneration:
        """Wrap a causal LM saved in a local folder (see :func:`unified_grn.loading.from_backbone`)."""
        return loading.from_backbone(
            cls, path, visual_tokenizer=visual_tokenizer, text_tokenizer=text_tokenizer, **kwargs
        )
