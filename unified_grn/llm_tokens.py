"""Visual tokens for other LLMs: HBQ bits <-> ids of an extended Hugging Face text tokenizer.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1: one latent position carries ``C``
channels x ``M`` rounds of binary HBQ codes. A ``2^{C M}`` vocabulary cannot become vocabulary
entries, so a position's bits are cut into groups of ``b = bits_per_token`` (4, 8 or 16) and each
group becomes one of ``2^b`` new tokens. ``extend_llm_tokenizer`` adds them to any HF tokenizer.

Bit order. A position's ``C * M`` bits are flattened in the GRN vocabulary's canonical order
(``unified_grn.vocab.flatten_bits``: round-major, slot ``r * C + c``, coarse rounds first) and
token ``j`` of the position holds slots ``j*b .. j*b + b - 1``, the first slot as the most
significant bit of its value. So the first tokens of a position carry its coarsest rounds. ``C * M``
must be divisible by ``b``: with the usual ``M = 4``, ``b = 4`` works for every ``C``, ``b = 8``
for even ``C`` and ``b = 16`` for ``C`` divisible by 4 (C = 16: 16, 8 or 4 tokens per position).

Token sequence of one image or video with latent grid ``(T', H', W')`` (self-describing: the grid
comes back from the ids alone, and the row / frame markers give an LLM the 2D structure, as
Emu3's end-of-line / end-of-frame tokens do)::

    <|visual_start|> <|vis_dim_T'|> <|vis_dim_H'|> <|vis_dim_W'|>
        for each frame: for each row: (W' positions x P value tokens) <|visual_row|>
                        <|visual_frame|>
    <|visual_end|>

``P = C M / b`` value tokens per position, named ``<|vis_{b}b_{v}|>`` (``v`` zero-padded, e.g.
``<|vis_8b_042|>``); ``<|vis_dim_n|>`` for ``n`` in ``[1, max_grid_size]``. Length:
``5 + T' (H' (W' P + 1) + 1)``. All added tokens are *special* (never split, never normalised), so
``tokenizer("".join(names), add_special_tokens=False)`` gives the ids back. The layout
(:class:`VisualTokenLayout`) is stored in the tokenizer's ``init_kwargs`` (so it is saved in
``tokenizer_config.json``) and as ``visual_token_layout.json`` next to it. The LLM's embeddings
must then be resized: ``model.resize_token_embeddings(len(tokenizer))``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenizers_visual.modeling_hbq import HBQCodes
from unified_grn.vocab import flatten_bits, unflatten_bits

__all__ = [
    "BITS_PER_TOKEN_CHOICES",
    "LAYOUT_FILE",
    "VISUAL_END",
    "VISUAL_FRAME",
    "VISUAL_ROW",
    "VISUAL_START",
    "VisualTokenLayout",
    "check_bits_per_token",
    "dim_token",
    "extend_llm_tokenizer",
    "find_visual_segments",
    "llm_ids_to_codes",
    "value_token",
]

logger = logging.getLogger(__name__)

VISUAL_START = "<|visual_start|>"
VISUAL_END = "<|visual_end|>"
VISUAL_ROW = "<|visual_row|>"
VISUAL_FRAME = "<|visual_frame|>"
BITS_PER_TOKEN_CHOICES = (4, 8, 16)
DEFAULT_MAX_GRID_SIZE = 256
LAYOUT_FILE = "visual_token_layout.json"
LAYOUT_FORMAT = "unified_grn.visual_token_layout"
LAYOUT_VERSION = 1
_INIT_KWARG = "visual_token_layout"


def value_token(bits_per_token: int, value: int) -> str:
    """Name of the token for ``value`` in ``[0, 2^bits_per_token)``, e.g. ``<|vis_8b_042|>``."""
    width = len(str(2**bits_per_token - 1))
    return f"<|vis_{bits_per_token}b_{value:0{width}d}|>"


def dim_token(n: int) -> str:
    """Name of the grid-size token for ``n`` (used for T', H' and W', in that order)."""
    return f"<|vis_dim_{n}|>"


def check_bits_per_token(num_channels: int, num_rounds: int, bits_per_token: int) -> None:
    """Raise a ``ValueError`` unless ``bits_per_token`` is allowed and divides ``C * M``."""
    if bits_per_token not in BITS_PER_TOKEN_CHOICES:
        raise ValueError(f"bits_per_token must be one of {BITS_PER_TOKEN_CHOICES}, got {bits_per_token!r}.")
    bits = num_channels * num_rounds
    if bits % bits_per_token:
        works = [b for b in BITS_PER_TOKEN_CHOICES if bits % b == 0]
        raise ValueError(
            f"a position has C*M = {num_channels}*{num_rounds} = {bits} bits, which is not divisible by "
            f"bits_per_token={bits_per_token}; values that work for this tokenizer: {works or 'none'} "
            "(C*M must be a multiple of 4, 8 or 16)."
        )


@dataclass(frozen=True)
class VisualTokenLayout:
    """Where the visual tokens sit in an extended LLM tokenizer (see the module docstring).

    Args:
        bits_per_token: ``b``, bits per value token (4, 8 or 16).
        num_channels: ``C`` of the HBQ tokenizer.
        num_rounds: ``M`` of the HBQ tokenizer.
        value_offset: id of ``value_token(b, 0)``; value ``v`` has id ``value_offset + v``.
        dim_offset: id of ``dim_token(1)``; size ``n`` has id ``dim_offset + n - 1``.
        max_grid_size: largest ``T'``, ``H'`` or ``W'`` a sequence can state.
        visual_start_id, visual_end_id, row_id, frame_id: ids of the four markers.
        hbq_fingerprint: ``unified_grn.export.tokenizer_fingerprint`` of the HBQ tokenizer the
            codes belong to (``None`` when unknown).
    """

    bits_per_token: int
    num_channels: int
    num_rounds: int
    value_offset: int
    dim_offset: int
    max_grid_size: int
    visual_start_id: int
    visual_end_id: int
    row_id: int
    frame_id: int
    hbq_fingerprint: str | None = None

    def __post_init__(self) -> None:
        check_bits_per_token(self.num_channels, self.num_rounds, self.bits_per_token)

    @property
    def tokens_per_position(self) -> int:
        """``P = C * M / bits_per_token``."""
        return self.num_channels * self.num_rounds // self.bits_per_token

    @property
    def num_values(self) -> int:
        return 2**self.bits_per_token

    def sequence_length(self, grid: Sequence[int]) -> int:
        """Tokens in the sequence of a ``(T', H', W')`` grid, markers included."""
        t, h, w = grid
        return 5 + t * (h * (w * self.tokens_per_position + 1) + 1)

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": LAYOUT_FORMAT, "format_version": LAYOUT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisualTokenLayout:
        if (
            data.get("format", LAYOUT_FORMAT) != LAYOUT_FORMAT
            or data.get("format_version", 1) > LAYOUT_VERSION
        ):
            raise ValueError(
                f"unsupported visual token layout {data.get('format')!r} version {data.get('format_version')}"
            )
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LAYOUT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> VisualTokenLayout:
        """From a ``visual_token_layout.json`` file or a folder holding one."""
        path = Path(path)
        file = path / LAYOUT_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no {LAYOUT_FILE} in {path}: is it an extended LLM tokenizer folder?")
        return cls.from_dict(json.loads(file.read_text()))

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VisualTokenLayout:
        """The layout an extended tokenizer carries (from ``extend_llm_tokenizer``)."""
        data = getattr(tokenizer, "init_kwargs", {}).get(_INIT_KWARG)
        if data is None:
            raise ValueError(
                f"{type(tokenizer).__name__} carries no visual token layout; extend it with "
                "extend_llm_tokenizer or load the saved extended tokenizer folder."
            )
        return cls.from_dict(data)

    # ---- names -------------------------------------------------------------------------------
    def token_names(self) -> dict[int, str]:
        """Every visual id -> its token name."""
        names = {
            self.visual_start_id: VISUAL_START,
            self.visual_end_id: VISUAL_END,
            self.row_id: VISUAL_ROW,
            self.frame_id: VISUAL_FRAME,
        }
        names.update({self.dim_offset + n - 1: dim_token(n) for n in range(1, self.max_grid_size + 1)})
        names.update(
            {self.value_offset + v: value_token(self.bits_per_token, v) for v in range(self.num_values)}
        )
        return names

    def ids_to_text(self, ids: Sequence[int] | torch.Tensor, names: dict[int, str] | None = None) -> str:
        """The string form of a visual sequence (its token names, concatenated)."""
        names = names or self.token_names()
        return "".join(names[int(i)] for i in ids)

    # ---- codes <-> ids -----------------------------------------------------------------------
    def _shifts(self, device: torch.device) -> torch.Tensor:
        return torch.arange(self.bits_per_token - 1, -1, -1, device=device)  # MSB first

    def codes_to_ids(self, codes: HBQCodes | torch.Tensor) -> torch.Tensor:
        """Codes or bits ``(B, T', H', W', C, M)`` -> ids ``(B, L)`` int64 (one sequence per item)."""
        bits = codes.bits if isinstance(codes, HBQCodes) else codes
        c, m = self.num_channels, self.num_rounds
        if bits.dim() != 6 or tuple(bits.shape[-2:]) != (c, m):
            raise ValueError(
                f"expected bits (B, T', H', W', {c}, {m}) for this layout, got {tuple(bits.shape)}."
            )
        b, (n, t, h, w) = self.bits_per_token, bits.shape[:4]
        too_big = [s for s in (t, h, w) if s > self.max_grid_size]
        if too_big:
            raise ValueError(
                f"grid {(t, h, w)} exceeds max_grid_size={self.max_grid_size}; extend with a larger one."
            )
        p = self.tokens_per_position
        slots = flatten_bits(bits.long()).reshape(n, t, h, w, p, b)  # (B, T', H', W', P, b), round-major
        ids = (slots << self._shifts(bits.device)).sum(-1) + self.value_offset  # (B, T', H', W', P)
        full = dict(dtype=torch.long, device=bits.device)
        rows = torch.cat([ids.reshape(n, t, h, w * p), torch.full((n, t, h, 1), self.row_id, **full)], -1)
        frames = torch.cat([rows.reshape(n, t, -1), torch.full((n, t, 1), self.frame_id, **full)], -1)
        dims = [self.dim_offset + s - 1 for s in (t, h, w)]
        head = torch.tensor([self.visual_start_id, *dims], **full).expand(n, 4)
        tail = torch.full((n, 1), self.visual_end_id, **full)
        return torch.cat([head, frames.reshape(n, -1), tail], -1)  # (B, L)

    def _grid_from_header(self, seq: torch.Tensor) -> tuple[int, int, int]:
        if seq.numel() < 5 or seq[0] != self.visual_start_id or seq[-1] != self.visual_end_id:
            raise ValueError(
                f"a visual segment must start with {VISUAL_START} (id {self.visual_start_id}) and end "
                f"with {VISUAL_END} (id {self.visual_end_id}), got {seq.numel()} ids."
            )
        dims = (seq[1:4] - self.dim_offset + 1).tolist()
        if any(not 1 <= d <= self.max_grid_size for d in dims):
            raise ValueError(
                f"tokens 1-3 of a visual segment must be {dim_token(1)}..{dim_token(self.max_grid_size)}."
            )
        grid = (dims[0], dims[1], dims[2])
        if seq.numel() != self.sequence_length(grid):
            raise ValueError(
                f"a visual segment for grid {grid} has {self.sequence_length(grid)} tokens, got {seq.numel()}."
            )
        return grid

    def segment_to_bits(self, seq: torch.Tensor) -> torch.Tensor:
        """One visual segment (start marker .. end marker) -> bits ``(T', H', W', C, M)`` uint8."""
        seq = torch.as_tensor(seq, dtype=torch.long).flatten()
        t, h, w = self._grid_from_header(seq)
        p = self.tokens_per_position
        frames = seq[4:-1].reshape(t, h * (w * p + 1) + 1)
        rows = frames[:, :-1].reshape(t, h, w * p + 1)
        if (frames[:, -1] != self.frame_id).any() or (rows[..., -1] != self.row_id).any():
            raise ValueError(
                f"misplaced {VISUAL_ROW} / {VISUAL_FRAME} markers in a visual segment of grid {(t, h, w)}."
            )
        values = rows[..., :-1].reshape(t, h, w, p) - self.value_offset  # (T', H', W', P)
        bad = (values < 0) | (values >= self.num_values)
        if bad.any():
            pos = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"a non-value token at (t, h, w, token) = {pos} of a visual segment.")
        slots = (values[..., None] >> self._shifts(values.device)) & 1  # (T', H', W', P, b)
        return unflatten_bits(slots.reshape(t, h, w, -1), self.num_channels).to(torch.uint8)


def find_visual_segments(
    ids: Sequence[int] | torch.Tensor, layout: VisualTokenLayout
) -> list[tuple[int, int]]:
    """``(start, stop)`` index pairs of every ``<|visual_start|> .. <|visual_end|>`` segment in ``ids``."""
    seq = torch.as_tensor(ids, dtype=torch.long).flatten()
    starts = (seq == layout.visual_start_id).nonzero().flatten().tolist()
    ends = (seq == layout.visual_end_id).nonzero().flatten().tolist()
    if len(starts) != len(ends) or any(s > e for s, e in zip(starts, ends)):
        raise ValueError(f"unbalanced {VISUAL_START} / {VISUAL_END} markers in the ids.")
    return [(s, e + 1) for s, e in zip(starts, ends)]


def _resolve_layout(layout: Any) -> VisualTokenLayout:
    if isinstance(layout, VisualTokenLayout):
        return layout
    if isinstance(layout, (str, Path)):
        return VisualTokenLayout.load(layout)
    return VisualTokenLayout.from_tokenizer(layout)


def _as_sequences(ids: Any) -> list[torch.Tensor]:
    if torch.is_tensor(ids) or isinstance(ids, np.ndarray):
        ids = torch.as_tensor(ids)
        return [ids] if ids.dim() == 1 else list(ids)
    ids = list(ids)
    if ids and not isinstance(ids[0], (int, np.integer)):
        return [torch.as_tensor(list(seq), dtype=torch.long) for seq in ids]
    return [torch.as_tensor(ids, dtype=torch.long)]


def llm_ids_to_codes(ids: Any, layout: VisualTokenLayout | Any) -> HBQCodes:
    """LLM token ids -> :class:`HBQCodes` (the exact inverse of ``VisualTokenLayout.codes_to_ids``).

    Args:
        ids: one sequence (list, 1-D tensor / array) or a batch (list of sequences, 2-D tensor).
            Each must hold exactly one visual segment; text ids around it are ignored.
        layout: a :class:`VisualTokenLayout`, an extended tokenizer, or a folder / file holding
            ``visual_token_layout.json``.

    Returns:
        Codes with ``bits (B, T', H', W', C, M)``; every item of a batch must have the same grid.
    """
    layout = _resolve_layout(layout)
    items = []
    for seq in _as_sequences(ids):
        segments = find_visual_segments(seq, layout)
        if len(segments) != 1:
            raise ValueError(
                f"expected exactly one {VISUAL_START} .. {VISUAL_END} segment per sequence, found "
                f"{len(segments)}; use find_visual_segments to split a sequence with several."
            )
        start, stop = segments[0]
        items.append(layout.segment_to_bits(seq[start:stop]))
    grids = {tuple(b.shape[:3]) for b in items}
    if len(grids) > 1:
        raise ValueError(
            f"a batch of ids must share one grid, got {sorted(grids)}; decode them one at a time."
        )
    return HBQCodes.from_bits(torch.stack(items))


def _load_llm_tokenizer(llm_tokenizer: Any) -> Any:
    if not isinstance(llm_tokenizer, (str, Path)):
        return copy.deepcopy(llm_tokenizer)  # never mutate the caller's tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(llm_tokenizer))
    except (OSError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load an HF tokenizer from {llm_tokenizer}: {first}") from err


def _contiguous_offset(tokenizer: Any, names: list[str], what: str) -> int:
    ids = tokenizer.convert_tokens_to_ids(names)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(
            f"the {what} tokens did not get consecutive ids in this tokenizer (some names already "
            "existed); start from the original, unextended tokenizer."
        )
    return ids[0]


def extend_llm_tokenizer(
    llm_tokenizer: Any,
    num_channels: int,
    num_rounds: int,
    bits_per_token: int = 8,
    *,
    max_grid_size: int = DEFAULT_MAX_GRID_SIZE,
    hbq_fingerprint: str | None = None,
    save_directory: str | Path | None = None,
) -> tuple[Any, VisualTokenLayout]:
    """Add the visual tokens to a copy of an HF tokenizer.

    Args:
        llm_tokenizer: a tokenizer object (copied, the argument is left unchanged) or a local folder.
        num_channels, num_rounds: ``C`` and ``M`` of the HBQ tokenizer.
        bits_per_token: 4, 8 or 16; adds ``2^bits_per_token`` value tokens.
        max_grid_size: adds ``<|vis_dim_1|>`` .. ``<|vis_dim_{max_grid_size}|>``.
        hbq_fingerprint: recorded in the layout, checked when decoding.
        save_directory: if given, the extended tokenizer and ``visual_token_layout.json`` go there.

    Returns:
        ``(tokenizer, layout)``. Resize the LLM's embeddings to ``len(tokenizer)`` before training.
    """
    check_bits_per_token(num_channels, num_rounds, bits_per_token)
    if max_grid_size < 1:
        raise ValueError(f"max_grid_size must be >= 1, got {max_grid_size}.")
    tokenizer = _load_llm_tokenizer(llm_tokenizer)
    markers = [VISUAL_START, VISUAL_END, VISUAL_ROW, VISUAL_FRAME]
    dims = [dim_token(n) for n in range(1, max_grid_size + 1)]
    values = [value_token(bits_per_token, v) for v in range(2**bits_per_token)]
    before = len(tokenizer)
    tokenizer.add_tokens(markers + dims + values, special_tokens=True)
    marker_ids = tokenizer.convert_tokens_to_ids(markers)
    layout = VisualTokenLayout(
        bits_per_token=bits_per_token,
        num_channels=num_channels,
        num_rounds=num_rounds,
        value_offset=_contiguous_offset(tokenizer, values, "value"),
        dim_offset=_contiguous_offset(tokenizer, dims, "grid-size"),
        max_grid_size=max_grid_size,
        visual_start_id=marker_ids[0],
        visual_end_id=marker_ids[1],
        row_id=marker_ids[2],
        frame_id=marker_ids[3],
        hbq_fingerprint=hbq_fingerprint,
    )
    tokenizer.init_kwargs[_INIT_KWARG] = layout.to_dict()
    logger.info("added %d visual tokens (%d -> %d ids)", len(tokenizer) - before, before, len(tokenizer))
    if save_directory is not None:
        tokenizer.save_pretrained(str(save_directory))
        layout.save(save_directory)
    return tokenizer, layout
