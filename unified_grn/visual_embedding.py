"""GRN's own visual modules around the backbone: HBQ input rows, positions, p_t, HBQ head.

GRN paper Sec. 3.1 (GRN_bit / GRN_ind labels) and Sec. 3.2 (multi-token channel prediction:
every channel of a latent position is predicted in one pass); research/grn_official.md Sec. 1.2
and 3.1 (the official ``word_embed`` is a Linear on the one-hot labels, the ``pt_embedder`` a
timestep embedder, the head a Linear to ``K * classes`` logits).

One visual position = one sequence position. Its input embedding is

    one_hot(labels) @ W_in * K^-0.5  +  pos_t[t] + pos_h[h] + pos_w[w]  +  MLP(sinusoid(p_t))

* ``one_hot(labels)`` is ``(N, K * classes)`` with exactly ``K`` ones (token layout of
  ``unified_grn.vocab``); the matmul sums the ``K`` selected HBQ input rows without ever making
  ``K`` embeddings per position. ``K^-0.5`` keeps the sum at the scale of one row, and the rows
  start at the text embedding's scale (``visual_init_std``), so visual and text inputs have
  matching norms.
* The kept-fraction embedding is **added to every position of the block** (not an extra
  token): the block length stays exactly ``T' H' W'`` (so the prefix cache is cropped by that
  count) and every position gets the signal at layer 0, like a DiT timestep embedding. Clean
  context images get ``p_t = 1``.

The head scores a hidden state against the HBQ output rows: ``(N, D) -> (N, K, classes)``.
Every module here is called through its own ``forward`` (ZeRO-3 gathers parameters there).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from unified_grn.vocab import GRNVocab

__all__ = ["GRNHBQHead", "GRNVisualEmbedding", "HBQInputRows", "KeptFractionEmbedding", "grid_coords"]


def grid_coords(grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """``(T' H' W', 3)`` int64 (t, h, w) of a grid in raster order (w fastest)."""
    axes = [torch.arange(n, device=device) for n in grid]
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([t, h, w], dim=-1).reshape(-1, 3)  # (T' H' W', 3)


class HBQInputRows(nn.Module):
    """The HBQ input rows ``W_in`` ``(num_hbq_tokens, D)``; forward is ``one_hot @ W_in``."""

    def __init__(self, num_tokens: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tokens, hidden_size))

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        return one_hot @ self.weight


class KeptFractionEmbedding(nn.Module):
    """``p_t`` in [0, 1] -> ``(N, D)``: sinusoidal features of ``1000 p_t`` and a 2-layer MLP."""

    MIN_ROWS = 64  # rows per MLP call (see forward)

    def __init__(self, hidden_size: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def sinusoid(self, kept_fraction: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        exponent = torch.arange(half, device=kept_fraction.device, dtype=torch.float32) / half
        freqs = torch.exp(-math.log(10000.0) * exponent)  # (half,)
        args = kept_fraction.float()[:, None] * 1000.0 * freqs[None]  # (N, half)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, frequency_dim)

    def forward(self, kept_fraction: torch.Tensor) -> torch.Tensor:
        # A block's positions share one p_t, so the MLP runs once per distinct value. The distinct
        # values are padded (repeating the last) to at least MIN_ROWS rows: a matmul with very few
        # rows takes a CPU kernel whose result depends on the weights' memory alignment, so a saved
        # and reloaded (mmapped) model would stop being bit-identical.
        values, inverse = torch.unique(kept_fraction, return_inverse=True)  # (U,), (N,)
        if 0 < values.numel() < self.MIN_ROWS:
            values = torch.cat([values, values[-1:].expand(self.MIN_ROWS - values.numel())])  # (MIN_ROWS,)
        features = self.sinusoid(values).to(self.mlp[0].weight.dtype)
        return self.mlp(features)[inverse]  # (U', D) -> (N, D)


class GRNVisualEmbedding(nn.Module):
    """Labels + (t, h, w) + p_t of visual positions -> input embeddings ``(N, D)``."""

    def __init__(self, vocab: GRNVocab, hidden_size: int, max_grid: list[int], frequency_dim: int) -> None:
        super().__init__()
        self.num_slots, self.num_classes = vocab.num_slots, vocab.num_classes
        self.hbq_rows = HBQInputRows(vocab.num_hbq_tokens, hidden_size)
        self.pos_t = nn.Embedding(max_grid[0], hidden_size)
        self.pos_h = nn.Embedding(max_grid[1], hidden_size)
        self.pos_w = nn.Embedding(max_grid[2], hidden_size)
        self.kept_fraction = KeptFractionEmbedding(hidden_size, frequency_dim)

    def one_hot(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(N, K)`` labels -> ``(N, K * classes)`` one-hot in the vocabulary's token layout."""
        offsets = torch.arange(self.num_slots, device=labels.device) * self.num_classes  # (K,)
        one_hot = torch.zeros(
            labels.shape[0], self.num_slots * self.num_classes, dtype=dtype, device=labels.device
        )
        return one_hot.scatter_(1, labels + offsets, 1.0)

    def forward(
        self, labels: torch.Tensor, coords: torch.Tensor, kept_fraction: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            labels: ``(N, K)`` int64 label of every slot (``unified_grn.vocab``).
            coords: ``(N, 3)`` int64 (t, h, w) in the latent grid.
            kept_fraction: ``(N,)`` float, the block's realised kept fraction ``p_t``.
        """
        codes = self.hbq_rows(self.one_hot(labels, self.hbq_rows.weight.dtype)) * self.num_slots**-0.5
        position = self.pos_t(coords[:, 0]) + self.pos_h(coords[:, 1]) + self.pos_w(coords[:, 2])
        return codes + position + self.kept_fraction(kept_fraction)


class GRNHBQHead(nn.Module):
    """Multi-token channel prediction: ``(N, D)`` hidden states -> ``(N, K, classes)`` logits."""

    def __init__(self, vocab: GRNVocab, hidden_size: int) -> None:
        super().__init__()
        self.num_slots, self.num_classes = vocab.num_slots, vocab.num_classes
        self.proj = nn.Linear(hidden_size, vocab.num_hbq_tokens)  # rows = HBQ output rows

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits = self.proj(hidden_states)  # (..., K * classes)
        return rearrange(logits, "... (k v) -> ... k v", v=self.num_classes)  # (..., K, classes)
