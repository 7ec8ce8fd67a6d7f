"""Attention masks of the unified GRN sequence: causal text, bidirectional visual blocks.

GRN paper Sec. 3.2 (Eq. 5: every visual token is predicted from the whole state ``F_t`` and the
condition) and research/grn_official.md Sec. 3.3 (the "T->V" layout: a visual block attends to its
prefix and to itself, text never attends to a block being generated). Rules, for a query at
sequence index ``i`` and a key at ``j`` of the same row:

* a pad key (``attention_mask == 0``) is never visible;
* text is causal: ``j <= i``;
* a visual block (``block_ids > 0``) is bidirectional: same block id -> visible whatever the order;
* a *target* block (noisy input, ``hidden``) is visible only from inside itself, so later text
  never reads noise; a clean copy of that image follows it when later turns read the image;
* the diagonal is always visible, so a fully padded query row is finite (no NaN in softmax).

Masks are additive floats ``(B, 1, Q, K)`` (0 = visible, ``finfo(dtype).min`` = masked), which
transformers passes through unchanged to eager, SDPA and flex attention.
"""

from __future__ import annotations

import torch

__all__ = ["build_visibility", "prefix_visual_mask", "to_additive_mask"]


def build_visibility(
    attention_mask: torch.Tensor,
    block_ids: torch.Tensor | None = None,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean visibility ``(B, L, L)`` (query, key) for the rules in the module docstring.

    Args:
        attention_mask: ``(B, L)`` 1 for real positions, 0 for padding.
        block_ids: ``(B, L)`` 0 for text, ``k > 0`` for the positions of visual block ``k``.
        hidden: ``(B, L)`` bool, True at positions of target (noisy) blocks.
    """
    real = attention_mask.bool()
    batch, length = real.shape
    idx = torch.arange(length, device=real.device)
    visible = (idx[:, None] >= idx[None, :]).expand(batch, length, length)  # (B, Lq, Lk) causal
    if block_ids is not None:
        same_block = (block_ids[:, :, None] == block_ids[:, None, :]) & (block_ids[:, None, :] > 0)
        visible = visible | same_block
        if hidden is not None:
            visible = visible & ~(hidden[:, None, :] & ~same_block)
    visible = visible & real[:, None, :]
    return visible | torch.eye(length, dtype=torch.bool, device=real.device)


def to_additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, Q, K)`` bool -> ``(B, 1, Q, K)`` float: 0 where visible, the dtype's minimum elsewhere."""
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    mask = mask.masked_fill(~visible, torch.finfo(dtype).min)
    return mask[:, None]  # (B, 1, Q, K)


def prefix_visual_mask(
    prefix_attention_mask: torch.Tensor, num_visual: int, dtype: torch.dtype
) -> torch.Tensor:
    """Mask of a visual block of ``num_visual`` queries run against a cached prefix.

    The block sees every real prefix position and all of itself (an explicit all-visible block:
    leaving the mask out would make transformers build a causal one, see DESIGN.md).

    Returns:
        ``(B, 1, V, P + V)`` additive float mask.
    """
    batch = prefix_attention_mask.shape[0]
    real = prefix_attention_mask.bool()[:, None, :].expand(batch, num_visual, -1)  # (B, V, P)
    block = torch.ones(batch, num_visual, num_visual, dtype=torch.bool, device=real.device)
    return to_additive_mask(torch.cat([real, block], dim=-1), dtype)
