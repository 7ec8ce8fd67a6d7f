"""A deterministic, resumable, rank-sharded mixture of data sources with per-source weights.

The **global stream** is a pure function of ``seed`` and the sources: position ``p`` (0, 1, 2, …)
names a source, drawn with probability ``weight / sum(weights)``, and that source's ``k``-th
draw, where ``k`` counts the earlier positions that chose the same source. Draw ``k`` of a
source of ``n`` rows reads row ``perm_e[k mod n]`` of epoch ``e = k // n``, a seeded permutation
per (seed, source, epoch); procedural sources (independent draws already) read row ``k mod n``.

Rank ``r`` of ``world_size`` takes positions ``r, r + W, r + 2W, …``: the ranks' streams are
disjoint and together are exactly the single-process stream. A position whose row cannot be read
is skipped (the source counts it once; see :meth:`DataMixture.counters`), on every rank count
alike, so skipping keeps the streams deterministic. :meth:`DataMixture.state_dict` holds the data
position (next position, draw counts, skip lists); loading it continues the identical sequence.

Source choices are drawn in blocks of ``block_size`` positions, vectorised, so the per-sample cost
does not grow with the world size; the draw counts at the start of the current block are part of
the state. With ``group_size = G > 1`` one choice is drawn per run of ``G`` consecutive positions
(every position of the run takes it): with ``G`` = the global batch size, each optimizer step
reads a single source, so an image step is not padded to the length of a video in the same batch.
The long-run share of each source is the same; ``G = 1`` is the per-position stream above.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from unified_grn.data.examples import Example
from unified_grn.data.sources import Source

__all__ = ["DataMixture"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_CHOICE_STREAM = 0x6D6978  # "mix": keeps the choice RNG apart from the permutation RNG
_PERM_STREAM = 0x706572  # "per"


class DataMixture:
    """An endless iterator of :class:`Example` s from weighted sources (module docstring).

    Args:
        sources: the sources (each with a unique ``name``); their order is part of the stream.
        weights: per-source weights (default: each source's ``weight``); >= 0, not all 0.
        seed: the stream's seed.
        rank: this process's rank.
        world_size: number of ranks sharing the stream.
        block_size: positions per vectorised block of source choices (part of the stream); rounded
            up to a multiple of ``group_size``.
        group_size: consecutive positions that share one source choice (module docstring).
        max_consecutive_skips: raise after this many unreadable rows in a row on this rank.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        weights: Sequence[float] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        block_size: int = 4096,
        max_consecutive_skips: int = 1000,
        group_size: int = 1,
    ) -> None:
        if not sources:
            raise ValueError("a data mixture needs at least one source.")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}; give the sources distinct names.")
        weights = [s.weight for s in sources] if weights is None else list(weights)
        if len(weights) != len(sources) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"need one weight >= 0 per source, not all zero; got {weights}.")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}.")
        block_size = -(-block_size // group_size) * group_size
        self.group_size = group_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}.")
        for source, w in zip(sources, weights):
            if w > 0 and len(source) == 0:
                raise ValueError(f"source {source.name!r} is empty.")
        self.sources, self.names = list(sources), names
        self.probs = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.block_size, self.max_consecutive_skips = block_size, max_consecutive_skips
        self.position = rank  # next global position this rank reads
        self.drawn = [0] * len(sources)  # examples this rank returned, per source
        self._block, self._block_counts = 0, np.zeros(len(sources), dtype=np.int64)
        self._choices, self._occurrence = self._draw_block(0)
        self._perms: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, permutation)

    # ----------------------------------------------------------------------------- the stream

    def _draw_block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Source choice of every position of ``block``, and each one's draw number within the block."""
        rng = np.random.default_rng([self.seed, _CHOICE_STREAM, block])
        groups = rng.choice(len(self.sources), size=self.block_size // self.group_size, p=self.probs)
        choices = np.repeat(groups, self.group_size)
        occurrence = np.zeros(self.block_size, dtype=np.int64)
        for s in range(len(self.sources)):
            hit = choices == s
            occurrence[hit] = np.arange(int(hit.sum()))
        return choices, occurrence

    def _seek_block(self, block: int) -> None:
        while self._block < block:  # positions only move forward; replay the block totals
            self._block_counts += np.bincount(self._choices, minlength=len(self.sources))
            self._block += 1
            self._choices, self._occurrence = self._draw_block(self._block)

    def locate(self, position: int) -> tuple[int, int, int]:
        """``(source, draw number k, row index)`` of a global position at or after the current block."""
        block, offset = divmod(position, self.block_size)
        if block < self._block:
            raise ValueError(f"position {position} is behind the mixture's current block {self._block}.")
        self._seek_block(block)
        s = int(self._choices[offset])
        k = int(self._block_counts[s] + self._occurrence[offset])
        return s, k, self._row(s, k)

    def _row(self, s: int, k: int) -> int:
        n = len(self.sources[s])
        if self.sources[s].iid:
            return k % n
        epoch = k // n
        cached = self._perms.get(s)
        if cached is None or cached[0] != epoch:
            perm = np.random.default_rng([self.seed, _PERM_STREAM, s, epoch]).permutation(n)
            cached = self._perms[s] = (epoch, perm)
        return int(cached[1][k % n])

    def __iter__(self) -> Iterator[Example]:
        return self

    def __next__(self) -> Example:
        skips = 0
        while True:
            position = self.position
            s, k, row = self.locate(position)
            self.position += self.world_size
            rng = random.Random(f"{self.seed}:{s}:{k}")  # per-draw randomness (e.g. a video clip's start)
            example = self.sources[s].load(row, rng)
            if example is not None:
                self.drawn[s] += 1
                example.position = position
                return example
            skips += 1
            if skips >= self.max_consecutive_skips:
                raise RuntimeError(
                    f"{skips} unreadable samples in a row on rank {self.rank}; skipped so far: "
                    f"{self.skipped()}. Check the data folders (see the warnings above)."
                )

    def take(self, n: int) -> list[Example]:
        """The next ``n`` examples."""
        return [next(self) for _ in range(n)]

    # ----------------------------------------------------------------------------- log + resume

    def skipped(self) -> dict[str, int]:
        """Unreadable rows seen so far, per source."""
        return {s.name: len(s.skipped) for s in self.sources}

    def counters(self) -> dict[str, int]:
        """Counters for the metrics log: ``data/<source>/samples``, ``data/<source>/skipped``, ``data/skipped``."""
        out: dict[str, int] = {}
        for name, drawn, skipped in zip(self.names, self.drawn, self.skipped().values()):
            out[f"data/{name}/samples"] = drawn
            out[f"data/{name}/skipped"] = skipped
        out["data/skipped"] = sum(self.skipped().values())
        return out

    def state_dict(self) -> dict[str, Any]:
        """The data position (JSON-serialisable): enough to continue the identical stream."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "block_size": self.block_size,
            "sources": list(self.names),
            "weights": self.probs.tolist(),
            "position": self.position,
            "block": self._block,
            "block_counts": self._block_counts.tolist(),
            "drawn": list(self.drawn),
            "bad_rows": {s.name: [[i, n] for i, n in sorted(s.bad_indices.items())] for s in self.sources},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same seed, sources, weights, rank and world size)."""
        mine = self.state_dict()
        for key in ("version", "seed", "rank", "world_size", "block_size", "sources"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"cannot resume the data mixture: {key} was {state.get(key)!r}, now {mine[key]!r} "
                    "(resume needs the same data config, seed and world size)."
                )
        if not np.allclose(state["weights"], mine["weights"]):
            raise ValueError(
                f"cannot resume the data mixture: weights were {state['weights']}, now {mine['weights']}."
            )
        self.position, self.drawn = int(state["position"]), [int(d) for d in state["drawn"]]
        self._block = int(state["block"])
        self._block_counts = np.asarray(state["block_counts"], dtype=np.int64)
        self._choices, self._occurrence = self._draw_block(self._block)
        for source in self.sources:
            source.mark_bad({int(i): str(n) for i, n in state["bad_rows"].get(source.name, [])})
