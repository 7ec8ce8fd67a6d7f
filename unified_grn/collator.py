"""Samples (text and HBQ-coded images/videos, interleaved) -> one left-padded GRN batch.

GRN paper Sec. 3.2 and Alg. 2 (the visual target of a sample, 10% condition drop for CFG,
Appendix D). A sample is a list of segments; the collator lays each out as one row::

    [BOS] text ... <|image_start|> [visual block] (<|image_end|> text ...)

* A **context** visual segment (``target=False``) is one clean block: bidirectional, read by
  everything after it.
* A **target** segment is a noisy block (the model corrupts it, Alg. 2, and predicts every slot)
  that only itself can see. If more segments follow, a clean copy of the same image comes right
  after it with the *same* position ids, so later turns read the clean image, exactly as at
  inference (where the generated image is appended to the cache once, clean).
* Generation samples (``task`` in t2i / t2v / c2i) lose their condition (all text before the
  first target) with probability ``condition_drop_prob``, leaving ``[BOS] <|image_start|>``
  (the unconditional prompt is never empty: it keeps BOS if the tokenizer has one, and always
  the start marker).

:class:`GRNBatch` fields (``B`` rows, ``L`` positions, ``N`` visual positions in row-major order,
``G`` visual blocks):

==================  ================  ==========================================================
``input_ids``       (B, L) int64      text ids; visual positions and padding hold the pad id
``attention_mask``  (B, L) int64      1 real, 0 left padding
``position_ids``    (B, L) int64      per-row 1D positions (0 at the first real token)
``text_targets``    (B, L) int64      id the logits at this position must predict, -100 = none
``block_ids``       (B, L) int64      0 text/pad, ``g + 1`` at the positions of block ``g``
``visual_codes``    (N, C, M) uint8   clean HBQ bits of every visual position
``visual_coords``   (N, 3) int64      (t, h, w) of every visual position in its grid
``block_grid``      (G, 3) int64      (T', H', W') of each block
``block_is_target`` (G,) bool         True = noisy target block (loss), False = clean context
==================  ================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from einops import rearrange

from tokenizers_visual.hbq import indices_to_bits
from unified_grn.visual_embedding import grid_coords
from unified_grn.vocab import GRNVocab

__all__ = [
    "GENERATION_TASKS",
    "GRNBatch",
    "GRNCollator",
    "GRNSample",
    "TextSegment",
    "VisualSegment",
    "prompt_ids",
]

IGNORE_INDEX = -100
GENERATION_TASKS = ("t2i", "t2v", "c2i")


@dataclass
class TextSegment:
    """Text (a string, or ids already tokenized); ``loss`` trains next-token prediction on it."""

    text: str | Sequence[int]
    loss: bool = False


@dataclass
class VisualSegment:
    """An image or video as HBQ codes.

    Args:
        codes: bits ``(T', H', W', C, M)`` uint8 or indices ``(T', H', W', C)`` int64; images may
            omit the ``T'`` axis.
        target: True = the model generates it (noisy block + loss); False = clean context.
        modality: ``"image"`` or ``"video"``; None = image when ``T' == 1``.
        start_label: train the text head to emit the start marker (chat: the model decides to draw).
    """

    codes: torch.Tensor
    target: bool = True
    modality: Literal["image", "video"] | None = None
    start_label: bool = False


@dataclass
class GRNSample:
    """One training sample: segments in order, and its task (``t2i``, ``t2v``, ``c2i``, ``text``, ``chat``)."""

    segments: list[TextSegment | VisualSegment]
    task: str = "chat"

    @classmethod
    def text_to_image(cls, prompt: str, codes: torch.Tensor) -> GRNSample:
        return cls([TextSegment(prompt), VisualSegment(codes, modality="image")], task="t2i")

    @classmethod
    def text_to_video(cls, prompt: str, codes: torch.Tensor) -> GRNSample:
        return cls([TextSegment(prompt), VisualSegment(codes, modality="video")], task="t2v")

    @classmethod
    def class_to_image(cls, label: int, codes: torch.Tensor, vocab: GRNVocab) -> GRNSample:
        return cls(
            [TextSegment([vocab.class_token_id(label)]), VisualSegment(codes, modality="image")], task="c2i"
        )

    @classmethod
    def text_only(cls, text: str, eos_token_id: int | None = None) -> GRNSample:
        segments: list[TextSegment | VisualSegment] = [TextSegment(text, loss=True)]
        if eos_token_id is not None:
            segments.append(TextSegment([eos_token_id], loss=True))
        return cls(segments, task="text")


@dataclass
class GRNBatch:
    """A collated batch (field table in the module docstring)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    text_targets: torch.Tensor
    block_ids: torch.Tensor
    visual_codes: torch.Tensor
    visual_coords: torch.Tensor
    block_grid: torch.Tensor
    block_is_target: torch.Tensor

    def to(self, device: torch.device | str) -> GRNBatch:
        return GRNBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of ``GRNForConditionalGeneration.forward``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _as_grid_bits(segment: VisualSegment, vocab: GRNVocab) -> torch.Tensor:
    """A segment's codes -> bits ``(T', H', W', C, M)`` uint8 (validated against ``vocab``)."""
    codes = segment.codes
    vocab.check_codes(codes)
    bits = (
        codes.to(torch.uint8)
        if codes.dtype in (torch.uint8, torch.bool)
        else indices_to_bits(codes, vocab.num_rounds)
    )
    if bits.dim() == 4:
        bits = bits.unsqueeze(0)  # image without T': (1, H', W', C, M)
    if bits.dim() != 5:
        raise ValueError(
            f"visual codes must have a (T', H', W') grid, got bits of shape {tuple(bits.shape)}."
        )
    return bits


def prompt_ids(
    tokenizer, vocab: GRNVocab, prompt: str | int | Sequence[int] | None, modality: str
) -> list[int]:
    """Ids of a generation prompt: ``[BOS] prompt <|image_start|>`` (or ``<|video_start|>``).

    ``prompt`` is text, a class label (int -> ``<|class_k|>``), ids, or None / "" (unconditional).
    """
    ids = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    if isinstance(prompt, int):
        ids.append(vocab.class_token_id(prompt))
    elif isinstance(prompt, str):
        ids += tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    elif prompt is not None:
        ids += list(prompt)
    return ids + [vocab.image_start_id if modality == "image" else vocab.video_start_id]


@dataclass
class _Row:
    ids: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)  # local block number + 1, 0 = text
    grids: list[torch.Tensor] = field(default_factory=list)  # bits per local block
    is_target: list[bool] = field(default_factory=list)

    def add_token(self, token: int, loss: bool) -> None:
        if loss and self.targets:
            self.targets[-1] = token  # the previous position's logits predict this token
        self.ids.append(token)
        self.pos.append(self.pos[-1] + 1 if self.pos else 0)
        self.targets.append(IGNORE_INDEX)
        self.blocks.append(0)

    def add_block(self, bits: torch.Tensor, target: bool, start: int, pad_id: int) -> None:
        size = bits.shape[0] * bits.shape[1] * bits.shape[2]
        self.grids.append(bits)
        self.is_target.append(target)
        self.ids += [pad_id] * size
        self.pos += list(range(start, start + size))
        self.targets += [IGNORE_INDEX] * size
        self.blocks += [len(self.grids)] * size


class GRNCollator:
    """``list[GRNSample] -> GRNBatch`` (layout and fields in the module docstring).

    Args:
        tokenizer: the model's text tokenizer (with GRN's special tokens).
        vocab: the model's :class:`~unified_grn.vocab.GRNVocab`.
        condition_drop_prob: probability of dropping a generation sample's condition.
        seed: seed of the collator's own generator (condition drop); or pass ``generator``.
        max_positions: the backbone's ``max_position_embeddings``; longer rows are an error.
    """

    def __init__(
        self,
        tokenizer,
        vocab: GRNVocab,
        condition_drop_prob: float = 0.1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        max_positions: int | None = None,
    ) -> None:
        self.tokenizer, self.vocab = tokenizer, vocab
        self.condition_drop_prob = condition_drop_prob
        self.generator = generator if generator is not None else torch.Generator()
        if generator is None and seed is not None:
            self.generator.manual_seed(seed)
        self.max_positions = max_positions
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_model(cls, model, **kwargs) -> GRNCollator:
        """A collator for ``model`` (its tokenizer, vocab, condition drop and max positions)."""
        kwargs.setdefault("condition_drop_prob", model.config.condition_drop_prob)
        kwargs.setdefault("max_positions", model.config.text_config.max_position_embeddings)
        return cls(model.text_tokenizer, model.vocab, **kwargs)

    def _drop_condition(self, sample: GRNSample) -> list[TextSegment | VisualSegment]:
        segments = list(sample.segments)
        if sample.task not in GENERATION_TASKS or self.condition_drop_prob <= 0:
            return segments
        if torch.rand((), generator=self.generator).item() >= self.condition_drop_prob:
            return segments
        first = next(i for i, s in enumerate(segments) if isinstance(s, VisualSegment) and s.target)
        return [s for i, s in enumerate(segments) if i >= first or not isinstance(s, TextSegment)]

    def _text_ids(self, segment: TextSegment) -> list[int]:
        if isinstance(segment.text, str):
            return self.tokenizer(segment.text, add_special_tokens=False)["input_ids"]
        return list(segment.text)

    def build_row(self, sample: GRNSample) -> _Row:
        """Lay out one sample (after condition drop) as token / block lists."""
        row = _Row()
        if self.tokenizer.bos_token_id is not None:
            row.add_token(self.tokenizer.bos_token_id, loss=False)
        segments = self._drop_condition(sample)
        for i, segment in enumerate(segments):
            if isinstance(segment, TextSegment):
                for token in self._text_ids(segment):
                    row.add_token(token, loss=segment.loss)
                continue
            self._add_visual(row, segment, more_follows=i + 1 < len(segments))
        if not row.ids:
            raise ValueError("a sample produced an empty row; every sample needs at least one token.")
        return row

    def _add_visual(self, row: _Row, segment: VisualSegment, more_follows: bool) -> None:
        bits = _as_grid_bits(segment, self.vocab)
        video = segment.modality == "video" or (segment.modality is None and bits.shape[0] > 1)
        start_id = self.vocab.video_start_id if video else self.vocab.image_start_id
        end_id = self.vocab.video_end_id if video else self.vocab.image_end_id
        row.add_token(start_id, loss=segment.start_label and segment.target)
        start = row.pos[-1] + 1
        row.add_block(bits, segment.target, start, self.pad_id)
        if segment.target and more_follows:
            row.add_block(bits, False, start, self.pad_id)  # the clean copy that later turns read
        if more_follows:
            row.add_token(end_id, loss=False)  # position start + T'H'W': after the block

    def __call__(self, samples: Sequence[GRNSample]) -> GRNBatch:
        rows = [self.build_row(s) for s in samples]
        for row in rows:
            if self.max_positions is not None and max(row.pos) + 1 > self.max_positions:
                raise ValueError(
                    f"a sample needs {max(row.pos) + 1} positions but the backbone has "
                    f"max_position_embeddings={self.max_positions}; shorten the prompt or use a smaller grid."
                )
        return self._pad(rows)

    def _pad(self, rows: list[_Row]) -> GRNBatch:
        length = max(len(r.ids) for r in rows)
        batch = len(rows)

        def left_pad(values: list[list[int]], fill: int) -> torch.Tensor:
            out = torch.full((batch, length), fill, dtype=torch.long)
            for b, v in enumerate(values):
                out[b, length - len(v) :] = torch.tensor(v, dtype=torch.long)
            return out

        offsets, grids, is_target = [], [], []
        for row in rows:  # global block number = running count over rows
            offsets.append(len(grids))
            grids += row.grids
            is_target += row.is_target
        block_ids = left_pad(
            [[b + off if b > 0 else 0 for b in r.blocks] for r, off in zip(rows, offsets)], 0
        )
        mask = left_pad([[1] * len(r.ids) for r in rows], 0)
        codes, coords, grid = self._block_tensors(grids)
        return GRNBatch(
            input_ids=left_pad([r.ids for r in rows], self.pad_id),
            attention_mask=mask,
            position_ids=left_pad([r.pos for r in rows], 0),
            text_targets=left_pad([r.targets for r in rows], IGNORE_INDEX),
            block_ids=block_ids,
            visual_codes=codes,
            visual_coords=coords,
            block_grid=grid,
            block_is_target=torch.tensor(is_target, dtype=torch.bool),
        )

    def _block_tensors(self, grids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-block bits ``(T', H', W', C, M)`` -> ``visual_codes``, ``visual_coords``, ``block_grid``."""
        if not grids:
            empty = torch.zeros(0, 3, dtype=torch.long)
            return (
                torch.zeros(0, self.vocab.num_channels, self.vocab.num_rounds, dtype=torch.uint8),
                empty,
                empty,
            )
        codes = torch.cat([rearrange(g, "t h w c m -> (t h w) c m") for g in grids])  # (N, C, M)
        coords = torch.cat([grid_coords(tuple(g.shape[:3])) for g in grids])  # (N, 3)
        grid = torch.tensor([list(g.shape[:3]) for g in grids], dtype=torch.long)  # (G, 3)
        return codes, coords, grid
