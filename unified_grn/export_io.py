"""I/O of the visual-token export: inputs -> pixel tensors, packed codes, decoded files.

Used by ``unified_grn.export`` (its module docstring describes the export folder, the columns and
the bit order that ``pack_codes`` / ``unpack_codes`` implement). An input is a folder
of images / videos (searched recursively, hidden paths skipped, ``metadata.jsonl`` rows joined by
``file_name`` as in ``datasets``' imagefolder), a folder written by ``save_to_disk``, or a
``Dataset`` / ``DatasetDict`` with an Image or Video column (read undecoded, so a broken cell is a
skipped item, not a crash). Each item becomes a :class:`MediaItem` whose ``read`` is lazy.

Pixel policy (``to_pixels``): with ``size`` the frames are resized (shorter side, bicubic) and
centre-cropped to ``(height, width)``; without it they are centre-cropped to the largest multiple
of the tokenizer's spatial stride. Videos keep their first ``1 + s_t k`` frames (at most
``max_frames``), as the causal tokenizer needs (docs/CONTRACTS.md, visual latent layout).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence

from unified_grn.processing_grn import load_video, save_video
from unified_grn.vocab import flatten_bits, unflatten_bits

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_EXTENSIONS",
    "RESERVED_COLUMNS",
    "VIDEO_EXTENSIONS",
    "MediaItem",
    "check_size",
    "open_inputs",
    "output_stem",
    "pack_codes",
    "read_errors",
    "save_pixels",
    "to_pixels",
    "unpack_codes",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv", ".m4v"})
DEFAULT_FPS = 8
# Columns the export writes itself; carried-over columns with these names get a ``meta_`` prefix.
RESERVED_COLUMNS = frozenset(
    {
        "source",
        "kind",
        "bits",
        "grid",
        "num_channels",
        "num_rounds",
        "frames",
        "height",
        "width",
        "tokenizer_fingerprint",
        "input_ids",
        "token_text",
    }
)


@dataclass
class MediaItem:
    """One image or video of the input; ``read()`` decodes it to RGB frames (raises if unreadable)."""

    source: str
    kind: str
    read: Callable[[], list[Image.Image]]
    meta: dict[str, Any] = field(default_factory=dict)


def read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mark an input as unreadable (skipped and counted, not fatal)."""
    import av

    return (OSError, ValueError, RuntimeError, EOFError, av.FFmpegError, Image.DecompressionBombError)


def _read_image(ref: str | Path | bytes) -> list[Image.Image]:
    with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref) as image:
        return [image.convert("RGB")]


def _read_video(ref: str | Path | bytes) -> list[Image.Image]:
    if isinstance(ref, bytes):
        if ref[:4] == b"GIF8":
            with Image.open(io.BytesIO(ref)) as gif:
                return [f.convert("RGB") for f in ImageSequence.Iterator(gif)]
        import av

        with av.open(io.BytesIO(ref)) as container:
            frames = [Image.fromarray(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    else:
        frames = [Image.fromarray(f) for f in load_video(ref)]
    if not frames:
        raise ValueError("no decodable frames")
    return frames


def _empty_cell() -> list[Image.Image]:
    raise ValueError("empty media cell")


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value)


def _meta_name(name: str) -> str:
    return f"meta_{name}" if name in RESERVED_COLUMNS else name


def _meta_features(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Arrow types of metadata columns: one Python type -> its Value, mixed types -> strings."""
    kinds = {bool: "bool", int: "int64", float: "float64", str: "string"}
    found: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            found.setdefault(key, set()).update({type(value)} - {type(None)})
    return {k: datasets.Value(kinds[next(iter(t))] if len(t) == 1 else "string") for k, t in found.items()}


def _folder_metadata(root: Path) -> dict[Path, dict[str, Any]]:
    """``file -> row`` from every ``metadata.jsonl`` under ``root`` (imagefolder convention)."""
    table: dict[Path, dict[str, Any]] = {}
    for meta in sorted(root.rglob("metadata.jsonl")):
        for line in meta.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "file_name" in row:
                path = (meta.parent / row.pop("file_name")).resolve()
                table[path] = {_meta_name(k): _scalar(v) for k, v in row.items()}
    return table


def _folder_items(root: Path) -> tuple[list[MediaItem], dict[str, Any]]:
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in media
        and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    if not files:
        raise ValueError(
            f"no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) or video "
            f"({', '.join(sorted(VIDEO_EXTENSIONS))}) files in {root}."
        )
    metadata = _folder_metadata(root)
    items = []
    for path in files:
        kind = "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"
        reader = _read_video if kind == "video" else _read_image
        meta = metadata.get(path.resolve(), {})
        items.append(MediaItem(path.relative_to(root).as_posix(), kind, lambda p=path, r=reader: r(p), meta))
    features = _meta_features([it.meta for it in items])
    for it in items:
        it.meta = {k: it.meta.get(k) for k in features}
    return items, features


def _media_column(ds: datasets.Dataset, column: str | None) -> tuple[str, str]:
    media = {k: f for k, f in ds.features.items() if isinstance(f, (datasets.Image, datasets.Video))}
    if column is None and media:
        column = next(iter(media))
    if column not in media:
        raise ValueError(
            f"the dataset has no {'column ' + repr(column) + ' of type' if column else ''} Image or Video "
            f"feature (columns: {list(ds.features)}); cast one with ds.cast_column(name, datasets.Image())."
        )
    return column, "video" if isinstance(media[column], datasets.Video) else "image"


def _dataset_items(ds: datasets.Dataset, column: str | None, split: str | None) -> Iterator[MediaItem]:
    column, kind = _media_column(ds, column)
    ds = ds.cast_column(
        column, datasets.Video(decode=False) if kind == "video" else datasets.Image(decode=False)
    )
    keep = [k for k, f in ds.features.items() if k != column and isinstance(f, datasets.Value)]
    reader = _read_video if kind == "video" else _read_image
    for i, row in enumerate(ds):
        ref = row[column] or {}
        data = ref.get("bytes") or ref.get("path")
        index = f"{split}[{i}]" if split else f"[{i}]"
        meta = {_meta_name(k): row[k] for k in keep} | ({"split": split} if split else {})
        if data is None:
            yield MediaItem(index, kind, _empty_cell, meta)
        else:
            yield MediaItem(ref.get("path") or index, kind, lambda d=data: reader(d), meta)


def _dataset_input(inputs: Any, column: str | None) -> tuple[Iterator[MediaItem], int, dict[str, Any]]:
    if isinstance(inputs, datasets.DatasetDict):
        splits = list(inputs.items())
    elif isinstance(inputs, datasets.Dataset):
        splits = [(None, inputs)]
    else:
        raise ValueError(
            f"inputs must be a folder, a datasets folder, a Dataset or a DatasetDict, got {type(inputs).__name__}."
        )
    first = splits[0][1]
    features = {_meta_name(k): f for k, f in first.features.items() if isinstance(f, datasets.Value)}
    if isinstance(inputs, datasets.DatasetDict):
        features["split"] = datasets.Value("string")
    _media_column(first, column)  # fail before any work
    items = (item for name, ds in splits for item in _dataset_items(ds, column, name))
    return items, sum(len(ds) for _, ds in splits), features


def open_inputs(inputs: Any, column: str | None) -> tuple[Iterator[MediaItem], int, dict[str, Any], str]:
    """``inputs`` -> (lazy items, their count, the carried-over column types, a description).

    Raises ``FileNotFoundError`` / ``ValueError`` for a missing folder, a folder without media
    files, or a dataset without an Image / Video column.
    """
    if not isinstance(inputs, (str, Path)):
        return (*_dataset_input(inputs, column), f"<{type(inputs).__name__}>")
    root = Path(inputs)
    if not root.is_dir():
        raise FileNotFoundError(
            f"input {root} is not a folder of images / videos or a saved datasets folder."
        )
    if (root / "state.json").is_file() or (root / "dataset_dict.json").is_file():
        return (*_dataset_input(datasets.load_from_disk(str(root)), column), str(root))
    items, features = _folder_items(root)
    return iter(items), len(items), features, str(root)


# ----------------------------------------------------------------------------- pixels


def _valid_frames(count: int, temporal_stride: int, max_frames: int | None) -> int:
    count = min(count, max_frames or count)
    return 1 + (count - 1) // temporal_stride * temporal_stride


def to_pixels(
    frames: list[Image.Image], size: tuple[int, int] | None, config: Any, max_frames: int | None
) -> torch.Tensor:
    """Frames -> ``(3, T, H, W)`` float in [-1, 1] (resize/crop policy in the module docstring)."""
    frames = frames[: _valid_frames(len(frames), config.temporal_stride, max_frames)]
    s = config.spatial_stride
    if size is not None:
        frames = [ImageOps.fit(f, (size[1], size[0]), Image.Resampling.BICUBIC) for f in frames]
    else:
        w, h = frames[0].size
        if h < s or w < s:
            raise ValueError(f"{w}x{h} px is smaller than the spatial stride {s}")
        left, top = (w - w // s * s) // 2, (h - h // s * s) // 2
        frames = [f.crop((left, top, left + w // s * s, top + h // s * s)) for f in frames]
    array = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # (T, H, W, 3)
    return torch.from_numpy(array).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, H, W)


def check_size(size: int | Sequence[int] | None, stride: int) -> tuple[int, int] | None:
    """``int`` / ``(height, width)`` / ``None`` -> ``(height, width)`` or ``None``; multiples of ``stride``."""
    if size is None:
        return None
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < stride or any(s % stride for s in hw):
        raise ValueError(
            f"size must be an int or (height, width), multiples of the spatial stride {stride}; got {size!r}."
        )
    return hw  # type: ignore[return-value]


# ----------------------------------------------------------------------------- codes and files


def pack_codes(bits: torch.Tensor) -> bytes:
    """Bits ``(T', H', W', C, M)`` -> bytes (canonical order, see the module docstring)."""
    slots = flatten_bits(bits.to(torch.uint8).cpu()).numpy()  # (T', H', W', M * C), round-major
    return np.packbits(slots.reshape(-1), bitorder="big").tobytes()


def unpack_codes(data: bytes, grid: Sequence[int], num_channels: int, num_rounds: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: bytes -> bits ``(T', H', W', C, M)`` uint8."""
    t, h, w = (int(g) for g in grid)
    count = t * h * w * num_channels * num_rounds
    if len(data) != (count + 7) // 8:
        raise ValueError(
            f"packed codes hold {len(data)} bytes; grid {(t, h, w)} with C*M = "
            f"{num_channels * num_rounds} needs {(count + 7) // 8}."
        )
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count, bitorder="big")
    slots = torch.from_numpy(flat.reshape(t, h, w, num_channels * num_rounds))
    return unflatten_bits(slots, num_channels).contiguous()


def output_stem(index: int, source: str | None) -> str:
    """``NNNNNN_<source stem>`` (no extension) for row ``index``, safe as a file name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", str(Path(source or "").with_suffix("")))[-60:].strip("_")
    return f"{index:06d}_{stem}" if stem else f"{index:06d}"


def save_pixels(
    pixels: torch.Tensor, folder: Path, stem: str, kind: str, video_format: str, fps: int
) -> Path:
    """``(3, T, H, W)`` in [-1, 1] -> ``folder/stem.png`` (images) or ``.mp4`` / ``.gif`` (videos)."""
    frames = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    frames = frames.permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
    if kind == "image":
        path = folder / f"{stem}.png"
        Image.fromarray(frames[0]).save(path)
        return path
    path = folder / f"{stem}.{video_format}"
    if video_format == "mp4":
        from unified_grn.data.moving_shapes import write_video  # libx264, lossless where available

        write_video(frames, path, fps)
        return path
    return save_video(frames, path, fps)
