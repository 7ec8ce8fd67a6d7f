"""Training data sources through ``datasets``: folders of captioned images and videos, class-labelled
images, jsonl conversations, text corpora, the procedural worlds, and token caches.

Each source is described by one typed :class:`SourceConfig` (``kind`` picks the format) and
built with :func:`build_source`. A source is a random-access list of :class:`Example` s
(``len(source)``, ``source.load(index, rng)``); unreadable rows (corrupt image, truncated or
too short video, missing conversation image) are skipped and counted once each
(``source.skipped``, ``tokenizers_visual.train_data.SkipCounter``), never fatal.

=================  ======  ==================================================================
kind               task    format
=================  ======  ==================================================================
``images``         t2i     ``datasets`` imagefolder: ``DIR[/split]/*.png`` + ``metadata.jsonl``
                           (``file_name``, ``text``); no metadata, no text or null text: ``""``
``classes``        c2i     imagefolder with a ``label`` column (int or names), or class
                           subfolders ``DIR[/split]/<class>/*.png`` (label = sorted folder index)
``videos``         t2v     videofolder ``*.mp4`` + ``metadata.jsonl``; clips of ``num_frames``
                           frames (every ``frame_stride``-th), decoded with PyAV
``conversations``  chat    a ``.jsonl`` file, or ``DIR[/split]/*.jsonl``: ``{"messages": [{"role",
                           "content": [{"type": "text", "text"} | {"type": "image", "image":
                           file}]}]}`` (the ``shapes-chat`` format; files relative to the jsonl)
``text``           text    ``.txt`` (``sample_by`` line / paragraph / document) or ``.jsonl`` /
                           ``.json`` with a ``text_column``; a folder of them; blank rows dropped
``shapes``         t2i     procedural ``shapes`` (``unified_grn.data.shapes``), from ``seed``
``shapes-classes`` c2i     procedural one-object scenes and their class (``shapes.CLASS_NAMES``)
``moving-shapes``  t2v     procedural videos (``unified_grn.data.moving_shapes``)
``shapes-chat``    chat    procedural conversations (``unified_grn.data.shapes_chat``)
``cache``          stored  a token cache written by ``grn cache-tokens`` (codes, not pixels)
=================  ======  ==================================================================

Folder images and frames are resized (shorter side) and centre-cropped to ``size``; procedural
sets render at ``size`` and need no files (``num_samples=None``: unbounded, sample ``i`` is a
pure function of (seed, split, i)). Videos are read with ``datasets.Video(decode=False)`` and
PyAV: datasets 5 decodes video only through torchcodec, which needs CUDA wheels.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tokenizers_visual.train_data import SkipCounter, decode_image, decode_video
from unified_grn.data.examples import TASKS, Example, Task, frames_to_pixels, image_to_pixels
from unified_grn.data.shapes import CLASS_NAMES

__all__ = [
    "SOURCE_KINDS",
    "Source",
    "SourceConfig",
    "build_source",
]

SourceKind = Literal[
    "images",
    "classes",
    "videos",
    "conversations",
    "text",
    "shapes",
    "shapes-classes",
    "moving-shapes",
    "shapes-chat",
    "cache",
]
SOURCE_KINDS: dict[str, str | None] = {  # kind -> task (None: stored in the cache)
    "images": "t2i",
    "classes": "c2i",
    "videos": "t2v",
    "conversations": "chat",
    "text": "text",
    "shapes": "t2i",
    "shapes-classes": "c2i",
    "moving-shapes": "t2v",
    "shapes-chat": "chat",
    "cache": None,
}
logger = logging.getLogger(__name__)

PROCEDURAL = ("shapes", "shapes-classes", "moving-shapes", "shapes-chat")
UNBOUNDED = sys.maxsize  # length of a procedural source with num_samples=None


@dataclass
class SourceConfig:
    """One data source of a training mixture (YAML: one entry of ``data.sources``).

    Attributes:
        kind: the format (table in the module docstring).
        path: folder or file; unused by the procedural kinds.
        weight: relative share of the mixture (>= 0).
        name: name in logs and resume state (default: the kind, or ``kind:folder-name``).
        split: split folder / ``datasets`` split to read (procedural: ``train`` or ``test``).
        size: square side in pixels after resize + crop (procedural: render size).
        num_frames: frames per video clip, ``1 + s_t k`` for the tokenizer's temporal stride.
        frame_stride: take every n-th source frame in a clip.
        num_samples: rows to use: the first n of a folder, or the size of a procedural set
            (None: all rows; procedural: unbounded).
        seed: seed of a procedural world.
        text_column: caption column (images, videos) or text column (jsonl corpora).
        label_column: label column (classes; kept by the other image kinds when present).
        sample_by: ``.txt`` corpora: ``"line"``, ``"paragraph"`` or ``"document"`` per row.
        task: ``cache`` only: use the stored rows for another task, e.g. ``"c2i"`` on a cache of
            labelled ``t2i`` images (None: the task the cache was written for).
    """

    kind: SourceKind
    path: str | None = None
    weight: float = 1.0
    name: str | None = None
    split: str = "train"
    size: int = 64
    num_frames: int = 9
    frame_stride: int = 1
    num_samples: int | None = None
    seed: int = 0
    text_column: str = "text"
    label_column: str = "label"
    sample_by: Literal["line", "paragraph", "document"] = "line"
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown data source kind {self.kind!r}; expected one of {list(SOURCE_KINDS)}.")
        if self.kind not in PROCEDURAL and not self.path:
            raise ValueError(f"a {self.kind!r} source needs a path.")
        if not self.weight >= 0:
            raise ValueError(f"source weight must be >= 0, got {self.weight}.")
        if self.size < 1 or self.num_frames < 1 or self.frame_stride < 1:
            raise ValueError("size, num_frames and frame_stride must be >= 1.")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 or None, got {self.num_samples}.")
        if self.task is not None and (self.kind != "cache" or self.task not in TASKS):
            raise ValueError(f"task overrides apply to cache sources only, with a task in {TASKS}.")
        if self.sample_by not in ("line", "paragraph", "document"):
            raise ValueError(f"sample_by must be 'line', 'paragraph' or 'document', got {self.sample_by!r}.")

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return self.kind if self.path is None else f"{self.kind}:{Path(self.path).name}"


class Source:
    """A random-access list of examples; subclasses implement ``__len__``, ``read`` and ``describe``."""

    task: Task
    iid = False  # rows are independent draws (procedural): read in order, never shuffled

    def __init__(self, name: str, weight: float = 1.0) -> None:
        self.name, self.weight = name, weight
        self.skipped = SkipCounter()
        self.bad_indices: dict[int, str] = {}  # index -> name of every unreadable row seen

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, index: int, rng: random.Random | None) -> Example:
        """Row ``index`` as an :class:`Example`; raises when the row cannot be read."""
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """A readable name of row ``index`` for the skip log (a file path where there is one)."""
        return f"{self.name}[{index}]"

    def load(self, index: int, rng: random.Random | None = None) -> Example | None:
        """Row ``index``, or None (counted once and logged) when it cannot be read."""
        if index in self.bad_indices:
            return None
        try:
            example = self.read(index, rng)
        except Exception as err:  # any decode failure skips the row; the mixture bounds a run of them
            name = self._safe_describe(index)
            self.bad_indices[index] = name
            self.skipped.add(name, err)
            return None
        example.source, example.index = self.name, index
        example.id = example.id or f"{self.name}[{index}]"
        return example

    def _safe_describe(self, index: int) -> str:
        try:
            return self.describe(index)
        except Exception:
            return f"{self.name}[{index}]"

    def mark_bad(self, entries: dict[int, str]) -> None:
        """Restore skip bookkeeping (a resumed run does not re-read or re-log known bad rows)."""
        self.bad_indices.update(entries)
        self.skipped.bad.update(entries.values())

    def __iter__(self) -> Iterator[Example]:
        for index in range(len(self)):
            example = self.load(index)
            if example is not None:
                yield example


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' per-split progress bars (for local files they only add noise)."""
    import datasets

    were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if not were_off:
            datasets.utils.enable_progress_bars()


def _load_split(builder: str, split: str, **kwargs: Any) -> Any:
    import datasets

    with quiet_datasets():
        splits = datasets.load_dataset(builder, **kwargs)
    if split not in splits:
        raise ValueError(f"no split {split!r} in {kwargs}; found {list(splits)}.")
    return splits[split]


def _first(dataset: Any, num_samples: int | None) -> Any:
    return (
        dataset if num_samples is None or num_samples >= len(dataset) else dataset.select(range(num_samples))
    )


def _require_dir(path: str, kind: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder {path!r} does not exist.")
    return folder


# ----------------------------------------------------------------------------- folders


class FolderSource(Source):
    """Images (t2i / c2i) or videos (t2v) from a ``datasets`` image / video folder."""

    def __init__(self, cfg: SourceConfig) -> None:
        import datasets

        super().__init__(cfg.display_name, cfg.weight)
        self.cfg, self.task = cfg, SOURCE_KINDS[cfg.kind]
        video = cfg.kind == "videos"
        builder, self.column = ("videofolder", "video") if video else ("imagefolder", "image")
        data = _load_split(builder, cfg.split, data_dir=str(_require_dir(cfg.path, cfg.kind)))
        feature = datasets.Video(decode=False) if video else datasets.Image(decode=False)
        data = data.cast_column(self.column, feature)
        self.has_text = cfg.text_column in data.column_names
        self.class_names: list[str] | None = None
        if cfg.kind == "classes":
            data = self._labels(data)
        self.data = _first(data, cfg.num_samples)

    def _labels(self, data: Any) -> Any:
        import datasets

        column = self.cfg.label_column
        if column not in data.column_names:
            raise ValueError(
                f"class folder {self.cfg.path!r} has no {column!r} column: add it to metadata.jsonl "
                "or put the images in one subfolder per class."
            )
        feature = data.features[column]
        if not isinstance(
            feature, datasets.ClassLabel
        ):  # rows without a class (null, -1) are not class images
            before = len(data)
            with quiet_datasets():
                data = data.filter(lambda v: v is not None and v != -1, input_columns=[column])
            logger.info(
                "%s: %d of %d rows have no class label and are left out",
                self.name,
                before - len(data),
                before,
            )
        if isinstance(feature, datasets.ClassLabel):
            self.class_names = list(feature.names)
        elif feature.dtype == "string":  # names in the metadata -> indices of the sorted names
            self.class_names = sorted(set(data[column]) - {None})
            data = data.cast_column(column, datasets.ClassLabel(names=self.class_names))
        return data

    def __len__(self) -> int:
        return len(self.data)

    def describe(self, index: int) -> str:
        record = self.data[index][self.column]
        return record.get("path") or f"{self.name}[{index}]"

    def read(self, index: int, rng: random.Random | None) -> Example:
        row = self.data[index]
        cfg = self.cfg
        if self.column == "video":
            pixels = decode_video(row["video"], cfg.size, cfg.num_frames, cfg.frame_stride, rng)
        else:
            pixels = decode_image(row["image"], cfg.size)  # (3, 1, H, W)
        text = (row.get(cfg.text_column) or "") if self.has_text else ""
        label = row.get(cfg.label_column)
        label = label if isinstance(label, int) and label >= 0 else None
        path = row[self.column].get("path")
        return Example(
            self.task, text=text, label=label, visuals=[pixels], id=Path(path).name if path else ""
        )


# ----------------------------------------------------------------------------- conversations


def _conversation_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    folder = path / split if (path / split).is_dir() else path
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no .jsonl conversation files in {folder}.")
    return files


def normalize_messages(messages: list[dict]) -> tuple[list[dict], list[str]]:
    """Messages with image items as ``{"type": "image", "index": k}`` and the image references in order."""
    out, images = [], []
    for message in messages:
        content = message["content"]
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content
        normal = []
        for item in items:
            if item["type"] == "image":
                normal.append({"type": "image", "index": len(images)})
                images.append(item["image"])
            elif item["type"] == "text":
                normal.append({"type": "text", "text": item["text"] or ""})
            else:
                raise ValueError(f"unknown content item type {item['type']!r}")
        out.append({"role": message["role"], "content": normal})
    return out, images


class ConversationSource(Source):
    """Conversations with text and images interleaved, from jsonl files (the shapes-chat format)."""

    task = "chat"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg.display_name, cfg.weight)
        path = Path(cfg.path)
        if not path.exists():
            raise FileNotFoundError(f"conversations path {cfg.path!r} does not exist.")
        files = _conversation_files(path, cfg.split)
        self.root, self.cfg = files[0].parent, cfg
        data = _load_split("json", "train", data_files=[str(f) for f in files])
        if "messages" not in data.column_names:
            raise ValueError(f"conversation files {files} have no 'messages' column.")
        self.data = _first(data, cfg.num_samples)

    def __len__(self) -> int:
        return len(self.data)

    def describe(self, index: int) -> str:
        row = self.data[index]
        return str(row.get("id") or f"{self.name}[{index}]")

    def read(self, index: int, rng: random.Random | None) -> Example:
        row = self.data[index]
        messages, images = normalize_messages(row["messages"])
        visuals = [decode_image({"path": str(self.root / name)}, self.cfg.size) for name in images]
        return Example("chat", visuals=visuals, messages=messages, id=str(row.get("id") or ""))


# ----------------------------------------------------------------------------- text


def _text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".jsonl", ".json"))
    if not files:
        raise FileNotFoundError(f"no .txt / .jsonl / .json files in {path}.")
    if len({p.suffix == ".txt" for p in files}) > 1:
        raise ValueError(f"{path} mixes .txt and .jsonl files; use one text source per format.")
    return files


class TextSource(Source):
    """Text-only documents from ``.txt`` (``sample_by`` rows) or jsonl files with a text column."""

    task = "text"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg.display_name, cfg.weight)
        path = Path(cfg.path)
        if not path.exists():
            raise FileNotFoundError(f"text corpus {cfg.path!r} does not exist.")
        files = [str(f) for f in _text_files(path)]
        if files[0].endswith(".txt"):
            data, self.column = (
                _load_split("text", "train", data_files=files, sample_by=cfg.sample_by),
                "text",
            )
        else:
            data, self.column = _load_split("json", "train", data_files=files), cfg.text_column
            if self.column not in data.column_names:
                raise ValueError(f"{cfg.path}: no {self.column!r} field (set text_column).")
        with quiet_datasets():
            data = data.filter(lambda t: bool(t and t.strip()), input_columns=[self.column])
        self.data = _first(data, cfg.num_samples)

    def __len__(self) -> int:
        return len(self.data)

    def read(self, index: int, rng: random.Random | None) -> Example:
        return Example("text", text=self.data[index][self.column])


# ----------------------------------------------------------------------------- procedural


class ProceduralSource(Source):
    """A procedural world: row ``i`` is generated from (seed, split, i); no files."""

    iid = True

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg.display_name, cfg.weight)
        self.cfg, self.task = cfg, SOURCE_KINDS[cfg.kind]
        if cfg.split not in ("train", "test"):
            raise ValueError(f"procedural split must be 'train' or 'test', got {cfg.split!r}.")
        self.length = UNBOUNDED if cfg.num_samples is None else cfg.num_samples
        self.class_names = list(CLASS_NAMES) if cfg.kind in ("shapes", "shapes-classes") else None

    def __len__(self) -> int:
        return self.length

    def read(self, index: int, rng: random.Random | None) -> Example:
        from unified_grn.data.moving_shapes import make_moving_shapes_example
        from unified_grn.data.shapes import make_shapes_example, sample_scene, split_rng
        from unified_grn.data.shapes_chat import make_shapes_chat_example
        from unified_grn.data.shapes_render import render_scene

        cfg, kind = self.cfg, self.cfg.kind
        if kind == "moving-shapes":
            ex = make_moving_shapes_example(cfg.seed, index, cfg.size, cfg.num_frames, cfg.split)
            return Example("t2v", text=ex["text"], visuals=[frames_to_pixels(ex["video"])])
        if kind == "shapes-chat":
            ex = make_shapes_chat_example(cfg.seed, index, cfg.size, cfg.split)
            messages, names = normalize_messages(ex["messages"])
            pictures = {im["file_name"]: im["image"] for im in ex["images"]}
            return Example("chat", visuals=[image_to_pixels(pictures[n]) for n in names], messages=messages)
        if kind == "shapes-classes":  # class images show exactly one object
            scene = sample_scene(split_rng(cfg.seed, index, cfg.split), cfg.size, kind="single")
            return Example(
                "c2i", text=scene.caption, label=scene.label, visuals=[image_to_pixels(render_scene(scene))]
            )
        ex = make_shapes_example(cfg.seed, index, cfg.size, cfg.split)
        label = ex["label"] if ex["label"] >= 0 else None
        return Example("t2i", text=ex["text"], label=label, visuals=[image_to_pixels(ex["image"])])


def build_source(cfg: SourceConfig) -> Source:
    """The source a config describes (token caches: :class:`~unified_grn.data.token_cache.TokenCache`)."""
    if cfg.kind in ("images", "classes", "videos"):
        return FolderSource(cfg)
    if cfg.kind == "conversations":
        return ConversationSource(cfg)
    if cfg.kind == "text":
        return TextSource(cfg)
    if cfg.kind in PROCEDURAL:
        return ProceduralSource(cfg)
    from unified_grn.data.token_cache import load_token_cache

    return load_token_cache(
        cfg.path, name=cfg.display_name, weight=cfg.weight, num_samples=cfg.num_samples, task=cfg.task
    )
