"""The token cache: encode a data source once with the HBQ tokenizer, train on the stored codes.

``grn cache-tokens`` (:func:`cache_tokens`) reads every row of a source (``sources.py``), encodes
its images / video clips with an :class:`~tokenizers_visual.HBQTokenizer` (GRN paper Sec. 3.1)
in batches, and writes a ``datasets`` Arrow dataset (``save_to_disk``) plus ``token_cache.json``.
Unreadable rows are skipped and counted (in the log and in the metadata). The folder is written
under a temporary name and renamed when complete, so a half-written cache is never loaded.

Rows (one per example; ``datasets.load_from_disk(DIR)`` reads them):

============  ==========================  ===============================================
``id``        string                      file name or ``source[index]``
``task``      string                      ``t2i`` / ``t2v`` / ``c2i`` / ``text`` / ``chat``
``text``      string                      caption or document (``""``: unconditional)
``label``     int64                       class, -1 when none
``messages``  string                      JSON conversation (chat; image items ``{"index": k}``)
``grids``     list<list<int32>>           ``(T', H', W')`` of each visual
``codes``     list<list<uint16>>          each visual's HBQ indices ``(T', H', W', C)``
                                          flattened row-major, values in ``[0, 2^M)``
============  ==========================  ===============================================

``token_cache.json`` holds the format version, task, row and skip counts, the source config, class
names, and the tokenizer: its ``latent_channels`` (C), ``rounds`` (M), strides, full config and a
fingerprint of config + weights. A cache is refused (:class:`TokenCacheMismatchError`) by a
tokenizer or model whose C or M differ; a different fingerprint with the same C / M only warns.
Video clips are cached from frame 0 (one clip per video); a cache is one split at one size.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn.data.examples import TASKS, Example
from unified_grn.data.sources import UNBOUNDED, Source, SourceConfig, build_source, quiet_datasets
from unified_grn.loading import load_visual_tokenizer as _load_visual_tokenizer

__all__ = [
    "TOKEN_CACHE_META",
    "TokenCache",
    "TokenCacheMismatchError",
    "cache_tokens",
    "encode_examples",
    "load_token_cache",
    "load_visual_tokenizer",
    "tokenizer_fingerprint",
]

logger = logging.getLogger(__name__)

TOKEN_CACHE_META = "token_cache.json"
FORMAT = "unified_grn.token_cache"
FORMAT_VERSION = 1


class TokenCacheMismatchError(ValueError):
    """A token cache was encoded by a tokenizer with other ``C`` (latent channels) or ``M`` (rounds)."""


load_visual_tokenizer = _load_visual_tokenizer  # re-exported: the one loader lives in unified_grn.loading


def tokenizer_fingerprint(tokenizer: HBQTokenizer) -> str:
    """:meth:`HBQTokenizer.fingerprint` (the same value export records)."""
    return tokenizer.fingerprint()


# ----------------------------------------------------------------------------- encoding


def _check_shape(pixels: torch.Tensor, tokenizer: HBQTokenizer, where: str) -> None:
    cfg = tokenizer.config
    frames, height, width = pixels.shape[1:]
    if height % cfg.spatial_stride or width % cfg.spatial_stride:
        raise ValueError(
            f"{where}: {height}x{width} px is not a multiple of the tokenizer's spatial stride "
            f"{cfg.spatial_stride}; set the source's size to a multiple of it."
        )
    if (frames - 1) % cfg.temporal_stride:
        raise ValueError(
            f"{where}: {frames} frames is not 1 + {cfg.temporal_stride}k (the tokenizer's temporal stride); "
            "set num_frames accordingly."
        )


@torch.no_grad()
def encode_examples(
    examples: Sequence[Example], tokenizer: HBQTokenizer, chunk_frames: int | None = None
) -> list[Example]:
    """Copies of ``examples`` with their pixel visuals replaced by HBQ indices ``(T', H', W', C)`` int64.

    Visuals of the same shape are encoded in one batch; coded visuals pass through unchanged.
    """
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for i, example in enumerate(examples):
        for j, visual in enumerate(example.visuals):
            if visual.is_floating_point():
                _check_shape(visual, tokenizer, example.id or example.source)
                groups.setdefault(tuple(visual.shape), []).append((i, j))
    coded = [list(example.visuals) for example in examples]
    for members in groups.values():
        pixels = torch.stack([examples[i].visuals[j] for i, j in members])  # (B, 3, T, H, W)
        pixels = pixels.to(device=tokenizer.device, dtype=tokenizer.dtype)
        indices = tokenizer.encode(pixels, chunk_frames=chunk_frames).indices.cpu()  # (B, T', H', W', C)
        for (i, j), codes in zip(members, indices):
            coded[i][j] = codes
    return [replace(example, visuals=visuals) for example, visuals in zip(examples, coded)]


# ----------------------------------------------------------------------------- writing


def _features() -> Any:
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "task": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.Value("int64"),
            "messages": datasets.Value("string"),
            "grids": datasets.List(datasets.List(datasets.Value("int32"))),
            "codes": datasets.List(datasets.List(datasets.Value("uint16"))),
        }
    )


def _row(example: Example) -> dict[str, Any]:
    return {
        "id": example.id,
        "task": example.task,
        "text": example.text or "",
        "label": -1 if example.label is None else int(example.label),
        "messages": json.dumps(example.messages) if example.messages is not None else "",
        "grids": [list(v.shape[:3]) for v in example.visuals],
        "codes": [v.reshape(-1).numpy().astype(np.uint16) for v in example.visuals],  # (T'*H'*W'*C,)
    }


def _tokenizer_meta(tokenizer: HBQTokenizer) -> dict[str, Any]:
    cfg = tokenizer.config
    return {
        "latent_channels": cfg.latent_channels,
        "rounds": cfg.rounds,
        "spatial_stride": cfg.spatial_stride,
        "temporal_stride": cfg.temporal_stride,
        "fingerprint": tokenizer_fingerprint(tokenizer),
        "config": json.loads(cfg.to_json_string()),
    }


def _write_rows(
    source: Source,
    tokenizer: HBQTokenizer,
    path: Path,
    batch_size: int,
    progress: bool,
    chunk_frames: int | None,
) -> int:
    """Encode every row of ``source`` into the Arrow file ``path``; return the number written."""
    from datasets.arrow_writer import ArrowWriter

    written, pending = 0, []
    with ArrowWriter(features=_features(), path=str(path)) as writer:
        bar = tqdm(range(len(source)), desc=f"cache-tokens {source.name}", unit="row", disable=not progress)
        for index in bar:
            example = source.load(index)  # None: unreadable, counted by the source
            if example is not None:
                pending.append(example)
            if pending and (len(pending) >= batch_size or index == len(source) - 1):
                for coded in encode_examples(pending, tokenizer, chunk_frames):
                    writer.write(_row(coded))
                written, pending = written + len(pending), []
                bar.set_postfix(skipped=len(source.skipped))
        writer.finalize()
    return written


def cache_tokens(
    source: SourceConfig | Source,
    tokenizer: HBQTokenizer,
    out_dir: str | Path,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
    chunk_frames: int | None = None,
) -> TokenCache:
    """Encode every row of ``source`` once and save the codes as a token cache in ``out_dir``.

    Args:
        source: a :class:`SourceConfig` (built here) or a built source; procedural sources need
            ``num_samples``.
        tokenizer: the HBQ tokenizer whose codes the model will train on (its device is used).
        out_dir: the cache folder (must not exist unless ``overwrite``).
        batch_size: rows encoded per tokenizer call.
        chunk_frames: causal chunking of long videos (``HBQTokenizer.encode``).

    Returns:
        The written cache, loaded.
    """
    cfg = source if isinstance(source, SourceConfig) else getattr(source, "cfg", None)
    if isinstance(source, SourceConfig):
        if source.kind == "cache":
            raise ValueError("the source is already a token cache.")
        source = build_source(source)
    if len(source) >= UNBOUNDED:
        raise ValueError(f"source {source.name!r} is unbounded; set num_samples to cache it.")
    if tokenizer.config.rounds is None:
        raise ValueError("the tokenizer is the unquantized twin (rounds=None); it has no codes to cache.")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it).")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_cache(source, cfg, tokenizer, staging, batch_size, progress, chunk_frames)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "dataset", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote token cache %s", out)
    return load_token_cache(out, tokenizer=tokenizer)


def _write_cache(
    source: Source,
    cfg: SourceConfig | None,
    tokenizer: HBQTokenizer,
    staging: Path,
    batch_size: int,
    progress: bool,
    chunk_frames: int | None,
) -> None:
    import datasets

    tokenizer.eval()
    rows = _write_rows(source, tokenizer, staging / "rows.arrow", batch_size, progress, chunk_frames)
    if rows == 0:
        raise ValueError(f"no readable rows in source {source.name!r} ({len(source.skipped)} skipped).")
    with quiet_datasets():
        datasets.Dataset.from_file(str(staging / "rows.arrow")).save_to_disk(str(staging / "dataset"))
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": source.task,
        "num_rows": rows,
        "num_skipped": len(source.skipped),
        "skipped": sorted(source.skipped.bad)[:1000],
        "source": asdict(cfg) if cfg is not None else {"name": source.name},
        "class_names": getattr(source, "class_names", None),
        "tokenizer": _tokenizer_meta(tokenizer),
    }
    (staging / "dataset" / TOKEN_CACHE_META).write_text(json.dumps(meta, indent=2) + "\n")
    if len(source.skipped):
        logger.warning("token cache %s: skipped %d unreadable rows", source.name, len(source.skipped))


# ----------------------------------------------------------------------------- reading


class TokenCache(Source):
    """A written token cache as a source of coded :class:`Example` s (visuals: indices ``(T', H', W', C)``).

    Attributes:
        meta: the parsed ``token_cache.json``.
        num_channels: ``C`` of the encoding tokenizer.
        num_rounds: ``M`` of the encoding tokenizer.
    """

    def __init__(
        self, path: str | Path, name: str | None = None, weight: float = 1.0, task: str | None = None
    ):
        import datasets

        self.path = Path(path)
        meta_file = self.path / TOKEN_CACHE_META
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"{path} is not a token cache (no {TOKEN_CACHE_META}); write one with grn cache-tokens."
            )
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported token cache format {self.meta.get('format')} v{self.meta.get('version')}."
            )
        super().__init__(name or f"cache:{self.path.name}", weight)
        self.task = task or self.meta["task"]
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {TASKS}.")
        tok = self.meta["tokenizer"]
        self.num_channels, self.num_rounds = tok["latent_channels"], tok["rounds"]
        self.fingerprint = tok["fingerprint"]
        self.class_names = self.meta.get("class_names")
        self.data = datasets.load_from_disk(str(self.path))
        self._arrow = self.data.with_format("arrow")

    def __len__(self) -> int:
        return len(self.data)

    def select_first(self, num_samples: int | None) -> TokenCache:
        if num_samples is not None and num_samples < len(self.data):
            self.data = self.data.select(range(num_samples))
            self._arrow = self.data.with_format("arrow")
        return self

    def read(self, index: int, rng: Any = None) -> Example:
        row = self._arrow[index]  # a one-row pyarrow Table
        grids = row.column("grids")[0].as_py()
        cell = row.column("codes")[0].values  # one list of uint16 per visual
        visuals = []
        for j, grid in enumerate(grids):
            flat = cell[j].values.to_numpy(zero_copy_only=False).astype(np.int64)
            visuals.append(torch.from_numpy(flat).view(*grid, self.num_channels))  # (T', H', W', C)
        label, messages = row.column("label")[0].as_py(), row.column("messages")[0].as_py()
        return Example(
            self.task,
            text=row.column("text")[0].as_py(),
            label=None if label < 0 else label,
            visuals=visuals,
            messages=json.loads(messages) if messages else None,
            id=row.column("id")[0].as_py(),
        )

    def check(
        self,
        tokenizer: HBQTokenizer | None = None,
        num_channels: int | None = None,
        num_rounds: int | None = None,
    ) -> None:
        """Refuse a tokenizer / model with other C or M (:class:`TokenCacheMismatchError`).

        A tokenizer with the same C and M but other weights (fingerprint) only logs a warning.
        """
        if tokenizer is not None:
            num_channels, num_rounds = tokenizer.config.latent_channels, tokenizer.config.rounds
        for what, mine, theirs in (
            ("C (latent channels)", self.num_channels, num_channels),
            ("M (rounds)", self.num_rounds, num_rounds),
        ):
            if theirs is not None and mine != theirs:
                raise TokenCacheMismatchError(
                    f"token cache {self.path} was encoded with {what} = {mine}, but the tokenizer / model has "
                    f"{theirs}; re-encode the data with `grn cache-tokens ... --tokenizer <that tokenizer>` "
                    "or train with the tokenizer the cache was written with."
                )
        if tokenizer is not None and tokenizer_fingerprint(tokenizer) != self.fingerprint:
            logger.warning(
                "token cache %s was encoded by a tokenizer with other weights (same C=%d, M=%d); "
                "its codes may not decode as intended with this one.",
                self.path,
                self.num_channels,
                self.num_rounds,
            )


def load_token_cache(
    path: str | Path,
    name: str | None = None,
    weight: float = 1.0,
    num_samples: int | None = None,
    task: str | None = None,
    tokenizer: HBQTokenizer | None = None,
    num_channels: int | None = None,
    num_rounds: int | None = None,
) -> TokenCache:
    """Open a token cache; with ``tokenizer`` or ``num_channels`` / ``num_rounds``, check it (see ``TokenCache.check``)."""
    cache = TokenCache(path, name=name, weight=weight, task=task).select_first(num_samples)
    cache.check(tokenizer, num_channels, num_rounds)
    return cache
