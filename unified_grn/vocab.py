"""The GRN vocabulary: text ids, GRN's special tokens, and the reserved HBQ token range.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1 (GRN_bit / GRN_ind labels) and Sec. 3.2
(multi-token channel prediction). This module owns the id layout; everything else (embedding
rows, logits, the collator, token export) goes through it.

Id layout (one integer line, ``base = base_vocab_size``)::

    [0, base)                          text ids of the text tokenizer (incl. its own specials)
    base + 0 .. base + 3               <|image_start|> <|image_end|> <|video_start|> <|video_end|>
    base + 4 + k, k < num_class_tokens <|class_k|>   (class-to-image conditions)
    .. backbone_vocab_size             padding rows (never produced by the tokenizer)
    [hbq_offset, hbq_offset + num_hbq_tokens)   HBQ tokens, hbq_offset = backbone_vocab_size

The first two groups are added to the text tokenizer and live in the backbone's (resized once,
at build) embedding and ``lm_head`` matrices. The HBQ tokens do *not*: their input rows live in
GRN's visual embedding and their output rows in GRN's HBQ head, so text decoding (``lm_head``)
cannot produce them, and no slice of a ZeRO-3-partitioned backbone matrix is ever taken.

HBQ tokens. One latent position carries ``(C, M)`` bits (``C`` channels, ``M`` rounds, coarse
first). Its *label slots* are

* GRN_bit: ``K = C * M`` binary slots, flattened **round-major**: slot ``k = r * C + c``
  (all channels of round 0 first, as the official code's ``raw_feature2bit_label``);
* GRN_ind: ``K = C`` slots, slot ``c`` holds the index in ``[0, 2^M)`` of channel ``c``
  (coarsest bit most significant, ``tokenizers_visual.hbq.bits_to_indices``).

Each slot takes one of ``num_classes`` values (2 for bit, ``2^M`` for ind), and token
``hbq_offset + k * num_classes + v`` means "slot ``k`` holds value ``v``". So a position's
input embedding is the one-hot of its ``K`` tokens times the HBQ input rows, and its logits
reshape to ``(K, num_classes)``. Token names: ``<|hbq_r{r}_c{c}_b{v}|>`` (bit) and
``<|hbq_c{c}_v{v}|>`` (ind).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange

from tokenizers_visual.hbq import bits_to_indices, indices_to_bits

__all__ = [
    "IMAGE_END",
    "IMAGE_START",
    "MODALITY_TOKENS",
    "VIDEO_END",
    "VIDEO_START",
    "GRNVocab",
    "class_token",
    "flatten_bits",
    "unflatten_bits",
]

IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"
VIDEO_START = "<|video_start|>"
VIDEO_END = "<|video_end|>"
MODALITY_TOKENS = (IMAGE_START, IMAGE_END, VIDEO_START, VIDEO_END)
Variant = Literal["bit", "ind"]

_BIT_NAME = re.compile(r"^<\|hbq_r(\d+)_c(\d+)_b(\d+)\|>$")
_IND_NAME = re.compile(r"^<\|hbq_c(\d+)_v(\d+)\|>$")


def class_token(k: int) -> str:
    """The special token of class ``k`` (class-to-image condition)."""
    return f"<|class_{k}|>"


def flatten_bits(bits: torch.Tensor) -> torch.Tensor:
    """``(..., C, M)`` bits -> ``(..., M * C)`` slots, round-major (slot ``r * C + c``)."""
    return rearrange(bits, "... c m -> ... (m c)")


def unflatten_bits(slots: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Inverse of :func:`flatten_bits`: ``(..., M * C)`` -> ``(..., C, M)``."""
    return rearrange(slots, "... (m c) -> ... c m", c=num_channels)


@dataclass(frozen=True)
class GRNVocab:
    """The id layout of one GRN model (see the module docstring).

    Args:
        base_vocab_size: number of text-tokenizer ids before GRN's special tokens.
        backbone_vocab_size: rows of the backbone's embedding / ``lm_head`` (final, padded).
        num_class_tokens: number of ``<|class_k|>`` tokens.
        variant: ``"bit"`` (GRN_bit) or ``"ind"`` (GRN_ind).
        num_channels: latent channels ``C``.
        num_rounds: HBQ rounds ``M``.
    """

    base_vocab_size: int
    backbone_vocab_size: int
    num_class_tokens: int
    variant: Variant
    num_channels: int
    num_rounds: int

    def __post_init__(self) -> None:
        if self.variant not in ("bit", "ind"):
            raise ValueError(f"variant must be 'bit' or 'ind', got {self.variant!r}.")
        if self.backbone_vocab_size < self.num_text_ids:
            raise ValueError(
                f"backbone_vocab_size={self.backbone_vocab_size} is too small: the text ids and GRN's "
                f"special tokens need {self.num_text_ids} rows."
            )

    # ---- text side ---------------------------------------------------------------------------
    @property
    def special_tokens(self) -> list[str]:
        """GRN's special tokens in id order (added to the text tokenizer)."""
        return [*MODALITY_TOKENS, *(class_token(k) for k in range(self.num_class_tokens))]

    @property
    def num_special_tokens(self) -> int:
        return len(MODALITY_TOKENS) + self.num_class_tokens

    @property
    def num_text_ids(self) -> int:
        """Ids the text tokenizer can produce: text ids + GRN specials (< backbone_vocab_size)."""
        return self.base_vocab_size + self.num_special_tokens

    def special_token_id(self, token: str) -> int:
        return self.base_vocab_size + self.special_tokens.index(token)

    @property
    def image_start_id(self) -> int:
        return self.base_vocab_size

    @property
    def image_end_id(self) -> int:
        return self.base_vocab_size + 1

    @property
    def video_start_id(self) -> int:
        return self.base_vocab_size + 2

    @property
    def video_end_id(self) -> int:
        return self.base_vocab_size + 3

    def class_token_id(self, k: int) -> int:
        if not 0 <= k < self.num_class_tokens:
            raise ValueError(f"class label must be in [0, {self.num_class_tokens}), got {k}.")
        return self.base_vocab_size + len(MODALITY_TOKENS) + k

    # ---- HBQ side ----------------------------------------------------------------------------
    @property
    def num_slots(self) -> int:
        """Label slots per latent position: ``C * M`` (bit) or ``C`` (ind)."""
        return self.num_channels * self.num_rounds if self.variant == "bit" else self.num_channels

    @property
    def num_classes(self) -> int:
        """Values per slot: 2 (bit) or ``2^M`` (ind)."""
        return 2 if self.variant == "bit" else 2**self.num_rounds

    @property
    def num_hbq_tokens(self) -> int:
        """``2 * C * M`` (bit) or ``C * 2^M`` (ind)."""
        return self.num_slots * self.num_classes

    @property
    def hbq_offset(self) -> int:
        return self.backbone_vocab_size

    @property
    def total_vocab_size(self) -> int:
        return self.hbq_offset + self.num_hbq_tokens

    def is_hbq_id(self, token_id: int) -> bool:
        return self.hbq_offset <= token_id < self.total_vocab_size

    def hbq_token_name(self, slot: int, value: int) -> str:
        """Name of the token "slot ``slot`` holds ``value``"."""
        self._check_slot_value(slot, value)
        if self.variant == "bit":
            r, c = divmod(slot, self.num_channels)
            return f"<|hbq_r{r}_c{c}_b{value}|>"
        return f"<|hbq_c{slot}_v{value}|>"

    def hbq_token_names(self) -> list[str]:
        """All HBQ token names in id order (``hbq_offset`` first)."""
        return [self.hbq_token_name(k, v) for k in range(self.num_slots) for v in range(self.num_classes)]

    def hbq_token_id(self, slot: int, value: int) -> int:
        self._check_slot_value(slot, value)
        return self.hbq_offset + slot * self.num_classes + value

    def parse_hbq_id(self, token_id: int) -> tuple[int, int]:
        """``token_id`` -> ``(slot, value)``."""
        if not self.is_hbq_id(token_id):
            raise ValueError(
                f"id {token_id} is not an HBQ token id (range [{self.hbq_offset}, {self.total_vocab_size}))."
            )
        return divmod(token_id - self.hbq_offset, self.num_classes)

    def parse_hbq_name(self, name: str) -> tuple[int, int]:
        """Token name -> ``(slot, value)``."""
        pattern = _BIT_NAME if self.variant == "bit" else _IND_NAME
        match = pattern.match(name)
        if match is None:
            raise ValueError(f"{name!r} is not a GRN_{self.variant} HBQ token name.")
        nums = [int(g) for g in match.groups()]
        slot = nums[0] * self.num_channels + nums[1] if self.variant == "bit" else nums[0]
        self._check_slot_value(slot, nums[-1])
        return slot, nums[-1]

    def _check_slot_value(self, slot: int, value: int) -> None:
        if not 0 <= slot < self.num_slots or not 0 <= value < self.num_classes:
            raise ValueError(
                f"HBQ slot must be in [0, {self.num_slots}) and value in [0, {self.num_classes}), "
                f"got slot={slot}, value={value}."
            )

    # ---- codes <-> labels <-> token ids ------------------------------------------------------
    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise if ``codes`` are not ``(..., C, M)`` bits or ``(..., C)`` indices of this vocab."""
        c, m = self.num_channels, self.num_rounds
        if codes.is_floating_point():
            raise ValueError(f"HBQ codes must be integer bits or indices, got {codes.dtype}.")
        if codes.dim() >= 2 and codes.shape[-2:] == (c, m) and codes.dtype in (torch.uint8, torch.bool):
            return
        if codes.dim() >= 1 and codes.shape[-1] == c and codes.dtype not in (torch.uint8, torch.bool):
            return
        raise ValueError(
            f"HBQ codes must be uint8 bits (..., C={c}, M={m}) or int64 indices (..., C={c}) "
            f"(this model's C={c}, M={m}), got shape {tuple(codes.shape)} and dtype {codes.dtype}."
        )

    def labels_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Bits ``(..., C, M)`` uint8 or indices ``(..., C)`` int64 -> labels ``(..., K)`` int64."""
        self.check_codes(codes)
        is_bits = codes.dtype in (torch.uint8, torch.bool)
        if self.variant == "bit":
            bits = codes if is_bits else indices_to_bits(codes.long(), self.num_rounds)
            return flatten_bits(bits).long()
        if is_bits:
            return bits_to_indices(codes.to(torch.uint8))
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_classes):
            raise ValueError(f"HBQ indices must lie in [0, {self.num_classes}).")
        return codes.long()

    def bits_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``(..., K)`` -> bits ``(..., C, M)`` uint8 (what the visual tokenizer decodes)."""
        if labels.shape[-1] != self.num_slots:
            raise ValueError(f"labels must end in K={self.num_slots} slots, got {tuple(labels.shape)}.")
        if self.variant == "bit":
            return unflatten_bits(labels, self.num_channels).to(torch.uint8)
        return indices_to_bits(labels.long(), self.num_rounds)

    def token_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``(..., K)`` -> HBQ token ids ``(..., K)`` (the layout export writes)."""
        slots = torch.arange(self.num_slots, device=labels.device)
        return self.hbq_offset + slots * self.num_classes + labels.long()

    def labels_from_token_ids(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`token_ids_from_labels`; raises if a slot holds the wrong token."""
        rel = token_ids.long() - self.hbq_offset
        slot, value = rel.div(self.num_classes, rounding_mode="floor"), rel % self.num_classes
        expected = torch.arange(self.num_slots, device=token_ids.device)
        if token_ids.shape[-1] != self.num_slots or (slot != expected).any():
            raise ValueError("token ids are not one HBQ token per slot in slot order.")
        return value
