"""Export HBQ visual tokens as a ``datasets`` dataset, and decode exported tokens back to pixels.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1: the HBQ tokenizer turns an image or
video into binary codes ``(T', H', W', C, M)``. This module writes them for other tools and
LLMs (issue 8, "export of visual tokens"); ``unified_grn.llm_tokens`` maps them to LLM token ids.

Export folder (``export_visual_tokens(inputs, out_dir, ...)``; ``datasets.load_from_disk(out_dir)``
opens it)::

    data-*.arrow, state.json, dataset_info.json   the table (``Dataset.save_to_disk``, Arrow)
    visual_tokens.json        manifest: format + version, tokenizer fingerprint, C, M, strides,
                              counts, skipped files, the LLM layout
    codes.parquet             the same table as one Parquet file (``parquet=True``)
    llm_tokenizer/            the extended LLM tokenizer + visual_token_layout.json (``llm_tokenizer=``)

Columns, one row per image or video, in input order:

* ``source`` (str): file path relative to the input folder; for a dataset, the media's stored
  path, else ``"[i]"`` (``"split[i]"`` for a ``DatasetDict``). ``kind``: ``"image"`` / ``"video"``.
* ``bits`` (binary): the codes packed 8 per byte (``numpy.packbits``, big-endian) in the order
  positions ``(t, h, w)`` raster-major, then each position's ``C * M`` bits in the canonical
  round-major order of ``unified_grn.vocab.flatten_bits`` (slot ``r * C + c``, coarse first).
  ``unpack_codes`` inverts it.
* ``grid`` (3 x int32): ``(T', H', W')``; ``num_channels`` / ``num_rounds``: ``C`` / ``M``;
  ``frames``, ``height``, ``width``: the pixel size that was encoded.
* ``tokenizer_fingerprint`` (str): :func:`tokenizer_fingerprint` of the HBQ tokenizer.
* with an LLM tokenizer: ``input_ids`` (int32 list) and ``token_text`` (their string form).
* scalar columns of a dataset input, or of ``metadata.jsonl`` files in an input folder (the
  ``imagefolder`` convention, e.g. captions), are carried over (a clashing name gets ``meta_``).

Pixels: images are resized (shorter side) and centre-cropped to ``size`` when it is given, else
centre-cropped to the largest multiple of the spatial stride; videos keep their first
``1 + s_t k`` frames (at most ``max_frames``). Items of one pixel shape that follow each other are
encoded in batches. Unreadable files are skipped, logged, counted and listed in the manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from tokenizers_visual.modeling_hbq import HBQTokenizer
from unified_grn.export_io import (
    DEFAULT_FPS,
    MediaItem,
    check_size,
    open_inputs,
    output_stem,
    pack_codes,
    read_errors,
    save_pixels,
    to_pixels,
    unpack_codes,
)
from unified_grn.llm_tokens import VisualTokenLayout, extend_llm_tokenizer, llm_ids_to_codes
from unified_grn.loading import load_visual_tokenizer

__all__ = [
    "EXPORT_FORMAT",
    "MANIFEST_FILE",
    "decode_visual_tokens",
    "export_visual_tokens",
    "load_export",
    "load_visual_tokenizer",
    "pack_codes",
    "tokenizer_fingerprint",
    "unpack_codes",
]

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "unified_grn.visual_tokens"
EXPORT_VERSION = 1
MANIFEST_FILE = "visual_tokens.json"
LLM_TOKENIZER_DIR = "llm_tokenizer"
PARQUET_FILE = "codes.parquet"
_ROWS_PER_CHUNK = 1024
# Column types; keep in sync with export_io.RESERVED_COLUMNS (carried-over columns avoid these names).
_CODE_FEATURES = {
    "source": datasets.Value("string"),
    "kind": datasets.Value("string"),
    "bits": datasets.Value("binary"),
    "grid": datasets.List(datasets.Value("int32"), length=3),
    "num_channels": datasets.Value("int32"),
    "num_rounds": datasets.Value("int32"),
    "frames": datasets.Value("int32"),
    "height": datasets.Value("int32"),
    "width": datasets.Value("int32"),
    "tokenizer_fingerprint": datasets.Value("string"),
}
_LLM_FEATURES = {"input_ids": datasets.List(datasets.Value("int32")), "token_text": datasets.Value("string")}


# ----------------------------------------------------------------------------- tokenizer


def _as_tokenizer(tokenizer: HBQTokenizer | str | Path) -> HBQTokenizer:
    return tokenizer if isinstance(tokenizer, HBQTokenizer) else load_visual_tokenizer(tokenizer)


def tokenizer_fingerprint(tokenizer: HBQTokenizer | str | Path) -> str:
    """:meth:`HBQTokenizer.fingerprint` of a tokenizer object or folder."""
    return _as_tokenizer(tokenizer).fingerprint()


def _check_tokenizer(
    tokenizer: HBQTokenizer, tokenizer_fp: str, made: tuple[int, int, str | None], what: str, check_fp: bool
) -> None:
    """Raise unless ``tokenizer`` (fingerprint ``tokenizer_fp``) made ``what``: ``made = (C, M, fingerprint)``."""
    got = (tokenizer.config.latent_channels, tokenizer.config.rounds)
    name = tokenizer.name_or_path or "the given HBQTokenizer"
    theirs = f"{what} were made by an HBQ tokenizer with C={made[0]}, M={made[1]}, fingerprint {made[2]}"
    ours = f"the decoding tokenizer {name} has C={got[0]}, M={got[1]}, fingerprint {tokenizer_fp}"
    if got != made[:2]:
        raise ValueError(f"{theirs}, but {ours}; decode with the tokenizer that made them.")
    if check_fp and made[2] and made[2] != tokenizer_fp:
        raise ValueError(
            f"{theirs}, but {ours} (same C and M, other weights); decode with the tokenizer that made them."
        )


# ----------------------------------------------------------------------------- export


class _TableWriter:
    """Rows -> Arrow chunks of ``_ROWS_PER_CHUNK`` (so Python lists never hold the whole export)."""

    def __init__(self, features: datasets.Features) -> None:
        self.features, self.rows, self.chunks = features, [], []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= _ROWS_PER_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.chunks.append(datasets.Dataset.from_list(self.rows, features=self.features))
            self.rows = []

    def finish(self) -> datasets.Dataset:
        self.flush()
        return datasets.concatenate_datasets(self.chunks)


@dataclass
class _Encoder:
    """Encodes batches of same-shape pixels and writes one row per item."""

    tokenizer: HBQTokenizer
    fingerprint: str
    writer: _TableWriter
    layout: VisualTokenLayout | None
    names: dict[int, str] | None
    counts: dict[str, int] = field(default_factory=lambda: {"image": 0, "video": 0})

    def __call__(self, batch: list[tuple[MediaItem, torch.Tensor]]) -> None:
        pixels = torch.stack([px for _, px in batch]).to(self.tokenizer.device, self.tokenizer.dtype)
        bits = self.tokenizer.encode(pixels).bits.cpu()  # (B, T', H', W', C, M)
        ids = self.layout.codes_to_ids(bits) if self.layout is not None else None  # (B, L)
        c, m = bits.shape[-2:]
        for i, (item, px) in enumerate(batch):
            row = dict(
                source=item.source, kind=item.kind, bits=pack_codes(bits[i]), grid=list(bits.shape[1:4])
            )
            row.update(
                num_channels=c, num_rounds=m, frames=px.shape[1], height=px.shape[2], width=px.shape[3]
            )
            row.update(tokenizer_fingerprint=self.fingerprint, **item.meta)
            if ids is not None:
                row.update(input_ids=ids[i].tolist(), token_text=self.layout.ids_to_text(ids[i], self.names))
            self.writer.add(row)
            self.counts[item.kind] += 1


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True / --overwrite).")
        if not (out_dir / MANIFEST_FILE).is_file():
            raise FileExistsError(
                f"refusing to overwrite {out_dir}: it is not a visual-token export (no {MANIFEST_FILE})."
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _encode_all(
    items: Iterator[MediaItem], total: int, encoder: _Encoder, opts: dict[str, Any]
) -> list[dict[str, str]]:
    """Read, convert and encode every item; return the skipped ones as ``{"source", "reason"}``."""
    skipped, batch, errors = [], [], read_errors()
    config = encoder.tokenizer.config
    for item in tqdm(items, total=total, desc="export-tokens", unit="item", disable=not opts["progress"]):
        try:
            pixels = to_pixels(item.read(), opts["size"], config, opts["max_frames"])
        except errors as err:
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
            logger.warning("skipped %s: %s", item.source, reason)
            skipped.append({"source": item.source, "reason": reason})
            continue
        if batch and (pixels.shape != batch[0][1].shape or len(batch) >= opts["batch_size"]):
            encoder(batch)
            batch = []
        batch.append((item, pixels))
    if batch:
        encoder(batch)
    return skipped


def _write_outputs(
    out: Path, table: datasets.Dataset, llm: Any, layout: VisualTokenLayout | None, parquet: bool
) -> None:
    table.save_to_disk(str(out))
    if parquet:
        table.to_parquet(str(out / PARQUET_FILE))
    if layout is not None:
        llm.save_pretrained(str(out / LLM_TOKENIZER_DIR))
        layout.save(out / LLM_TOKENIZER_DIR)


def _manifest(
    described: str,
    tokenizer: HBQTokenizer,
    fingerprint: str,
    size: tuple[int, int] | None,
    counts: dict[str, int],
    skipped: list[dict[str, str]],
    layout: VisualTokenLayout | None,
) -> dict[str, Any]:
    """The ``visual_tokens.json`` content (see the module docstring)."""
    hbq = ("latent_channels", "rounds", "spatial_stride", "temporal_stride")
    llm = None
    if layout is not None:
        llm = dict(tokenizer_dir=LLM_TOKENIZER_DIR, ids_column="input_ids", text_column="token_text")
        llm["layout"] = layout.to_dict()
    return dict(
        format=EXPORT_FORMAT,
        format_version=EXPORT_VERSION,
        input=described,
        tokenizer_fingerprint=fingerprint,
        hbq={k: getattr(tokenizer.config, k) for k in hbq},
        bits_order="numpy.packbits (big-endian) over (t, h, w, slot r * C + c)",
        size=size,
        num_items=counts["image"] + counts["video"],
        num_images=counts["image"],
        num_videos=counts["video"],
        num_skipped=len(skipped),
        skipped=skipped[:1000],
        llm=llm,
    )


def export_visual_tokens(
    inputs: str | Path | datasets.Dataset | datasets.DatasetDict,
    out_dir: str | Path,
    tokenizer: HBQTokenizer | str | Path,
    *,
    llm_tokenizer: Any = None,
    bits_per_token: int | None = None,
    batch_size: int = 8,
    size: int | Sequence[int] | None = None,
    max_frames: int | None = None,
    column: str | None = None,
    parquet: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> datasets.Dataset:
    """Encode images / videos with an HBQ tokenizer and write them as a dataset (module docstring).

    Args:
        inputs: a folder of images and/or videos (searched recursively), a folder written by
            ``save_to_disk``, or a ``Dataset`` / ``DatasetDict`` with an Image or Video column.
        out_dir: the export folder (must be empty or absent, unless ``overwrite``).
        tokenizer: an :class:`HBQTokenizer`, its folder, or a GRN model folder.
        llm_tokenizer: an HF tokenizer (object or local folder) to extend; adds ``input_ids`` and
            ``token_text`` columns and saves the extended tokenizer in ``out_dir/llm_tokenizer``.
        bits_per_token: 4, 8 or 16 (default 8); only with ``llm_tokenizer``.
        batch_size: items per ``encode`` call.
        size: ``int`` or ``(height, width)`` to resize + centre-crop to; ``None`` keeps each
            item's size, cropped to a multiple of the spatial stride.
        max_frames: keep at most this many video frames (then ``1 + s_t k``).
        column: the media column of a dataset input (default: its first Image / Video column).
        parquet: also write ``codes.parquet``.

    Returns:
        The exported table (as reloaded from ``out_dir``).
    """
    if bits_per_token is not None and llm_tokenizer is None:
        raise ValueError("bits_per_token needs llm_tokenizer (the LLM tokenizer to extend).")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    tokenizer = _as_tokenizer(tokenizer)
    config = tokenizer.config
    opts = dict(
        size=check_size(size, config.spatial_stride),
        max_frames=max_frames,
        batch_size=batch_size,
        progress=progress,
    )
    items, total, meta_features, described = open_inputs(inputs, column)
    fingerprint = tokenizer_fingerprint(tokenizer)
    out = Path(out_dir)
    llm = layout = names = None
    if llm_tokenizer is not None:  # extended (and validated) before out_dir is touched
        llm, layout = extend_llm_tokenizer(
            llm_tokenizer,
            config.latent_channels,
            config.rounds,
            bits_per_token or 8,
            hbq_fingerprint=fingerprint,
        )
        names = layout.token_names()
    _prepare_out_dir(out, overwrite)
    features = datasets.Features({**_CODE_FEATURES, **(_LLM_FEATURES if layout else {}), **meta_features})
    encoder = _Encoder(tokenizer, fingerprint, _TableWriter(features), layout, names)
    skipped = _encode_all(items, total, encoder, opts)
    if not encoder.writer.rows and not encoder.writer.chunks:
        first = f" (first: {skipped[0]['source']}: {skipped[0]['reason']})" if skipped else ""
        raise ValueError(f"no readable images or videos in {described}: {len(skipped)} skipped{first}.")
    table = encoder.writer.finish()
    _write_outputs(out, table, llm, layout, parquet)
    manifest = _manifest(described, tokenizer, fingerprint, opts["size"], encoder.counts, skipped, layout)
    manifest["parquet"] = PARQUET_FILE if parquet else None
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if skipped:
        where = out / MANIFEST_FILE
        logger.warning("skipped %d unreadable item(s) of %s (listed in %s)", len(skipped), described, where)
    logger.info(
        "exported %d images and %d videos to %s", encoder.counts["image"], encoder.counts["video"], out
    )
    return datasets.load_from_disk(str(out))


# ----------------------------------------------------------------------------- decode


def load_export(path: str | Path) -> tuple[datasets.Dataset, dict[str, Any] | None]:
    """An export folder (or any ``save_to_disk`` folder) -> ``(table, manifest or None)``."""
    folder = Path(path)
    if not (folder / "state.json").is_file():
        raise ValueError(
            f"{folder} is not an export folder (no datasets state.json); write one with grn export-tokens."
        )
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if manifest is not None and manifest.get("format_version", 0) > EXPORT_VERSION:
        raise ValueError(
            f"{folder} has export format version {manifest['format_version']}, newer than {EXPORT_VERSION}."
        )
    return datasets.load_from_disk(str(folder)), manifest


def _resolve_ids_layout(layout: Any, folder: Path | None) -> VisualTokenLayout:
    if isinstance(layout, VisualTokenLayout):
        return layout
    if layout is None:
        if folder is None:
            raise ValueError("decoding token ids needs layout= (a VisualTokenLayout or extended tokenizer).")
        layout = folder / LLM_TOKENIZER_DIR
    if isinstance(layout, (str, Path)):
        return VisualTokenLayout.load(layout)
    return VisualTokenLayout.from_tokenizer(layout)


def _check_source(
    table: datasets.Dataset, tokenizer: HBQTokenizer, layout: VisualTokenLayout | None, check_fp: bool
) -> None:
    """Raise unless every row's codes (or the id layout) were made by ``tokenizer``."""
    tokenizer_fp = tokenizer_fingerprint(tokenizer)
    if layout is not None:
        made = (layout.num_channels, layout.num_rounds, layout.hbq_fingerprint)
        _check_tokenizer(tokenizer, tokenizer_fp, made, "the token ids", check_fp)
        return
    missing = [c for c in ("bits", "grid", "num_channels", "num_rounds") if c not in table.column_names]
    if missing:
        raise ValueError(f"the table lacks the code columns {missing} (columns: {table.column_names}).")
    cms = sorted(set(zip(table["num_channels"], table["num_rounds"])))
    fps = (
        sorted(set(table["tokenizer_fingerprint"]))
        if "tokenizer_fingerprint" in table.column_names
        else [None]
    )
    for c, m in cms:
        for fp in fps:
            _check_tokenizer(tokenizer, tokenizer_fp, (c, m, fp), "the exported codes", check_fp)


def _row_bits(row: dict[str, Any], ids_column: str | None, layout: VisualTokenLayout | None) -> torch.Tensor:
    if ids_column is not None:
        return llm_ids_to_codes(row[ids_column], layout).bits[0]
    return unpack_codes(row["bits"], row["grid"], row["num_channels"], row["num_rounds"])


def _decode_batch(
    batch: list[tuple[int, dict[str, Any], torch.Tensor]],
    tokenizer: HBQTokenizer,
    out: Path,
    video_format: str,
    fps: int,
) -> list[Path]:
    bits = torch.stack([b for _, _, b in batch]).to(tokenizer.device)  # (B, T', H', W', C, M)
    pixels = tokenizer.decode(bits).cpu()  # (B, 3, T, H, W)
    paths = []
    for (index, row, b), px in zip(batch, pixels):
        kind = row.get("kind") or ("image" if b.shape[0] == 1 else "video")
        paths.append(save_pixels(px, out, output_stem(index, row.get("source")), kind, video_format, fps))
    return paths


def decode_visual_tokens(
    source: str | Path | datasets.Dataset,
    out_dir: str | Path,
    tokenizer: HBQTokenizer | str | Path,
    *,
    ids_column: str | None = None,
    layout: Any = None,
    video_format: str = "mp4",
    fps: int = DEFAULT_FPS,
    batch_size: int = 8,
    check_fingerprint: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Decode exported codes, or LLM token ids, back to pixel files (PNG / mp4 / gif).

    Args:
        source: an export folder (``export_visual_tokens``) or a table with its columns.
        out_dir: where the files go, named ``NNNNNN_<source stem>.png|mp4|gif`` by row.
        tokenizer: the HBQ tokenizer (object, folder, or GRN model folder). Its C, M and
            fingerprint must match the codes (or the id layout), else ``ValueError`` naming both.
        ids_column: decode the token ids of this column (e.g. ``input_ids``) instead of ``bits``.
        layout: for ids: a layout, an extended tokenizer or its folder (default: the export's
            ``llm_tokenizer/``).
        video_format: ``"mp4"`` or ``"gif"``.
        batch_size: items (of one grid, consecutive) per ``decode`` call.
        check_fingerprint: ``False`` skips the weights check (C and M are always checked).

    Returns:
        The written paths, in row order.
    """
    if video_format not in ("mp4", "gif"):
        raise ValueError(f"video_format must be 'mp4' or 'gif', got {video_format!r}.")
    tokenizer = _as_tokenizer(tokenizer)
    folder = None if isinstance(source, datasets.Dataset) else Path(source)
    table = source if folder is None else load_export(folder)[0]
    if ids_column is not None:
        if ids_column not in table.column_names:
            raise ValueError(f"the export has no {ids_column!r} column (columns: {table.column_names}).")
        layout = _resolve_ids_layout(layout, folder)
    _check_source(table, tokenizer, layout if ids_column else None, check_fingerprint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    batch: list[tuple[int, dict[str, Any], torch.Tensor]] = []
    for index, row in enumerate(tqdm(table, desc="decode-tokens", unit="item", disable=not progress)):
        bits = _row_bits(row, ids_column, layout if ids_column else None)  # (T', H', W', C, M)
        if batch and (bits.shape != batch[0][2].shape or len(batch) >= batch_size):
            written += _decode_batch(batch, tokenizer, out, video_format, fps)
            batch = []
        batch.append((index, row, bits))
    if batch:
        written += _decode_batch(batch, tokenizer, out, video_format, fps)
    logger.info("decoded %d items to %s", len(written), out)
    return written
