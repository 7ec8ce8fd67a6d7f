"""The prefix-cache path of the GRN model: the prompt runs once, then every refinement step runs only
the visual block against its cached keys and values (GRN paper Sec. 3.2, Alg. 1; the sampler in
``refinement.py`` / ``generation.py`` calls these). A mixin of
:class:`~unified_grn.modeling_grn.GRNForConditionalGeneration`, which provides the backbone,
embeddings, head and checks it uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange

from unified_grn.attention_masks import build_visibility, prefix_visual_mask, to_additive_mask
from unified_grn.collator import prompt_ids
from unified_grn.modeling_outputs import GRNPromptCache
from unified_grn.utils.cache_compat import cache_kwargs, output_cache
from unified_grn.visual_embedding import grid_coords

__all__ = ["GRNPrefixCacheMixin"]


class GRNPrefixCacheMixin:
    """``prepare_prompts`` -> ``encode_prompt`` (KV cache of the prompts) -> ``visual_logits_from_cache``."""

    def prepare_prompts(
        self, prompts: Sequence[str | int | Sequence[int] | None], modality: str = "image"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation prompts (text, class label, ids or None = unconditional) -> left-padded
        ``(input_ids, attention_mask)`` of ``[BOS] prompt <|image_start|>`` rows."""
        tokenizer = self.text_tokenizer
        rows = [prompt_ids(tokenizer, self.vocab, p, modality) for p in prompts]
        length = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long, device=self.device)
        attention_mask = torch.zeros_like(input_ids)
        for b, row in enumerate(rows):
            input_ids[b, length - len(row) :] = torch.tensor(row, device=self.device)
            attention_mask[b, length - len(row) :] = 1
        return input_ids, attention_mask

    def encode_prompt(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> GRNPromptCache:
        """Run left-padded prompts ``(B, P)`` once and keep their KV cache."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("prompts must be left-padded: the last position of every row must be real.")
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P)
        self._check_positions(int(position_ids.max()))
        embeds = self.embed_text(input_ids)
        if self._uses_flash():
            mask = attention_mask
        else:
            mask = to_additive_mask(build_visibility(attention_mask), embeds.dtype)
        out = self.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True
        )
        return GRNPromptCache(output_cache(out), attention_mask, position_ids[:, -1] + 1)

    def visual_logits_from_cache(
        self,
        cache: GRNPromptCache,
        codes: torch.Tensor,
        kept_fraction: float | torch.Tensor,
        grid: Sequence[int] | None = None,
        keep_in_cache: bool = False,
    ) -> torch.Tensor:
        """Logits of a visual block run against a prompt cache.

        Args:
            cache: from :meth:`encode_prompt` (``B`` rows).
            codes: the block's current input ``F_t``: bits ``(B, T', H', W', C, M)`` uint8 or
                indices ``(B, T', H', W', C)`` int64.
            kept_fraction: realised ``p_t`` of the input, a float or ``(B,)``.
            grid: optional ``(T', H', W')``, checked against ``codes``.
            keep_in_cache: keep the block in the cache (a clean image that later text reads);
                by default the cache is cropped back to the prompt.

        Returns:
            ``(B, T' H' W', K, classes)`` logits.
        """
        labels = self.vocab.labels_from_codes(codes)  # (B, T', H', W', K)
        code_grid = tuple(labels.shape[1:4])
        if labels.dim() != 5 or (grid is not None and tuple(grid) != code_grid):
            raise ValueError(
                f"codes must be (B, T', H', W', ...) with grid {grid}, got shape {tuple(codes.shape)}."
            )
        self._check_grid(code_grid)
        batch, num_visual = labels.shape[0], labels.shape[1] * labels.shape[2] * labels.shape[3]
        if batch != cache.attention_mask.shape[0]:
            raise ValueError(
                f"codes have {batch} rows but the prompt cache has {cache.attention_mask.shape[0]}."
            )
        self._check_positions(int(cache.next_position.max()) + num_visual - 1)
        embeds = self._block_embeds(labels, kept_fraction)  # (B, V, D)
        position_ids = cache.next_position[:, None] + torch.arange(num_visual, device=labels.device)
        mask, kwargs = self._block_mask(cache.attention_mask, num_visual, embeds.dtype)
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            **cache_kwargs(self.language_model, cache.past_key_values),
            use_cache=True,
            **kwargs,
        )
        if keep_in_cache:
            ones = cache.attention_mask.new_ones(batch, num_visual)
            cache.attention_mask = torch.cat([cache.attention_mask, ones], dim=-1)
            cache.next_position = cache.next_position + num_visual
        else:
            cache.past_key_values.crop(-num_visual)  # back to the prompt (a negative count)
        return self.hbq_head(out.last_hidden_state)  # (B, V, K, classes)

    def _block_embeds(self, labels: torch.Tensor, kept_fraction: float | torch.Tensor) -> torch.Tensor:
        """``(B, T', H', W', K)`` labels + ``p_t`` -> ``(B, T' H' W', D)`` visual embeddings."""
        batch, grid = labels.shape[0], tuple(labels.shape[1:4])
        num_visual = grid[0] * grid[1] * grid[2]
        pt = torch.as_tensor(kept_fraction, dtype=torch.float32, device=labels.device).expand(batch)
        coords = grid_coords(grid, labels.device).repeat(batch, 1)  # (B V, 3)
        flat = rearrange(labels, "b t h w k -> (b t h w) k")
        embeds = self.visual_embed(flat, coords, pt.repeat_interleave(num_visual))  # (B V, D)
        return rearrange(embeds, "(b v) d -> b v d", b=batch)

    def _block_mask(self, prefix_mask: torch.Tensor, num_visual: int, dtype: torch.dtype):
        """Attention mask (and kwargs) of a visual block against the cached prefix: all visible."""
        if self._uses_flash():  # flash kernels: 2D padding mask, non-causal block
            ones = prefix_mask.new_ones(prefix_mask.shape[0], num_visual)
            return torch.cat([prefix_mask, ones], dim=-1), {"is_causal": False}
        # Every refinement step asks for the same mask: keep the last one (one entry, by value).
        memo = self.__dict__.get("_block_mask_memo")
        if (
            memo is None
            or memo[1:3] != (num_visual, dtype)
            or memo[0].shape != prefix_mask.shape
            or memo[0].device != prefix_mask.device
            or not torch.equal(memo[0], prefix_mask)
        ):
            memo = (
                prefix_mask.clone(),
                num_visual,
                dtype,
                prefix_visual_mask(prefix_mask, num_visual, dtype),
            )
            self.__dict__["_block_mask_memo"] = memo
        return memo[3], {}
