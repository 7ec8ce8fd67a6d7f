"""Output and state dataclasses of the unified GRN model (``modeling_grn.py``).

GRN paper Sec. 3.2: ``GRNOutput`` carries the Alg. 2 / Eq. 7 losses; ``GRNPromptCache`` the prompt
KV cache reused at every refinement step; ``VisualInputs`` the per-position visual inputs of one
full-sequence pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

__all__ = ["GRNOutput", "GRNPromptCache", "VisualInputs"]


@dataclass
class GRNOutput(ModelOutput):
    """Output of :meth:`GRNForConditionalGeneration.forward`.

    Attributes:
        loss: ``visual_loss + text_loss_weight * text_loss`` (terms that exist), scalar; with
            ``visual_focal_gamma > 0`` or ``visual_round_weights`` its visual term is the weighted Eq. 7.
        visual_loss: mean over target blocks of the per-block mean slot cross-entropy (Eq. 7).
        text_loss: mean next-token cross-entropy over positions with a text target.
        visual_logits: ``(N_t, K, classes)`` logits at the target visual positions.
        visual_targets: ``(N_t, K)`` ground-truth labels of those positions.
        text_logits: ``(N_x, V)`` logits at the positions with a text target.
        kept_fraction: ``(G,)`` realised ``p_t`` of every visual block (1 for context blocks).
    """

    loss: torch.Tensor | None = None
    visual_loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    visual_logits: torch.Tensor | None = None
    visual_targets: torch.Tensor | None = None
    text_logits: torch.Tensor | None = None
    kept_fraction: torch.Tensor | None = None


@dataclass
class GRNPromptCache:
    """A prompt's KV cache (:meth:`GRNForConditionalGeneration.encode_prompt`).

    Attributes:
        past_key_values: the backbone's cache, holding exactly the prompt after every call.
        attention_mask: ``(B, P)`` 1 real, 0 left padding.
        next_position: ``(B,)`` position id of the first position after the prompt.
    """

    past_key_values: Cache
    attention_mask: torch.Tensor
    next_position: torch.Tensor

    def repeat_interleave(self, repeats: int) -> GRNPromptCache:
        """Repeat every row ``repeats`` times in place (several samples per prompt); returns self."""
        self.past_key_values.batch_repeat_interleave(repeats)
        self.attention_mask = self.attention_mask.repeat_interleave(repeats, dim=0)
        self.next_position = self.next_position.repeat_interleave(repeats, dim=0)
        return self


@dataclass
class VisualInputs:
    """Per-position visual inputs of a batch (N positions, G blocks)."""

    inputs: torch.Tensor  # (N, K) labels fed to the model
    targets: torch.Tensor  # (N, K) ground truth
    coords: torch.Tensor  # (N, 3)
    block_index: torch.Tensor  # (N,)
    is_target: torch.Tensor  # (N,) bool
    kept_fraction: torch.Tensor  # (G,)
