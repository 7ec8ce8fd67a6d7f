"""What the tokenizer trainer optimises and how: the starting weights, which parts train, AdamW
parameter groups and the learning-rate schedule (GRN paper Sec. 4.1 trains with AdamW at a constant
lr after warm-up; the decays are the usual ``transformers`` ones).

The lr schedule (:func:`lr_lambda`) is shared with the GRN trainer (``unified_grn.training``), so
``optim.lr_schedule / decay_start / min_lr_ratio`` mean the same in both configs.

``model.init_from`` starts from a trained tokenizer folder; ``model.freeze_encoder`` then trains the
decoder alone. The encoder (and so every code it emits) stays bit-identical, which is what makes a
decoder fine-tune useful after a GRN has been trained on the codes: token caches and the GRN keep
working, and only the pixels they decode to change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

from .modeling_hbq import HBQTokenizer, HBQTokenizerConfig

__all__ = ["build_tokenizer", "lr_lambda", "param_groups", "LRScheduleConfig"]

logger = logging.getLogger(__name__)


class LRScheduleConfig(Protocol):
    """The fields :func:`lr_lambda` reads (both trainers' ``OptimConfig`` have them)."""

    warmup_steps: int
    lr_schedule: str
    decay_start: int | None
    min_lr_ratio: float


def lr_lambda(optim: LRScheduleConfig, max_steps: int) -> Callable[[int], float]:
    """The lr factor after ``step`` optimizer steps: linear warm-up over ``optim.warmup_steps``, then
    constant, or a linear / cosine decay from ``optim.decay_start`` (default: the end of warm-up)
    to ``optim.min_lr_ratio`` at ``max_steps`` (then flat)."""
    warmup, floor = optim.warmup_steps, optim.min_lr_ratio
    start = optim.decay_start if optim.decay_start is not None else warmup

    def factor(step: int) -> float:
        value = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if optim.lr_schedule == "constant" or step < start:
            return value
        progress = min(1.0, (step - start) / max(1, max_steps - start))
        shape = (
            1.0 - progress if optim.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        )
        return value * (floor + (1.0 - floor) * shape)

    return factor


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices / conv kernels only, not on biases, norms and other 1-D parameters.
    Frozen parameters (``requires_grad=False``) are left out."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the tokenizer has no trainable parameters (is everything frozen?)")
    return [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]


def build_tokenizer(
    model_cfg: HBQTokenizerConfig, init_from: str | None, freeze_encoder: bool
) -> HBQTokenizer:
    """A fresh tokenizer of ``model_cfg``, or the weights of ``init_from``; the encoder frozen on request."""
    if init_from is not None:
        model = HBQTokenizer.from_pretrained(init_from)
        logger.info("tokenizer weights from %s (fingerprint %s)", init_from, model.fingerprint()[:12])
    else:
        model = HBQTokenizer(model_cfg)
    if freeze_encoder:
        model.vae.encoder.requires_grad_(False)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(
            "encoder frozen: training the decoder only (%d parameters); codes stay the same", trainable
        )
    return model
