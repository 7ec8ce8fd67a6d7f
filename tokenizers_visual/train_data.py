"""Data for the tokenizer trainer: local image / video folders through ``datasets``.

* Images: ``datasets.load_dataset("imagefolder", data_dir=DIR)`` (``train/``, optional ``test/``,
  optional ``metadata.jsonl``), read with ``Image(decode=False)`` and decoded here with PIL.
* Videos: ``load_dataset("videofolder", data_dir=DIR)`` with ``Video(decode=False)`` (datasets 5
  decodes video only through torchcodec, whose wheels need CUDA), decoded with PyAV. A training
  clip is ``num_frames = 1 + 4k`` frames, every ``frame_stride``-th, from a random start; videos
  shorter than that are skipped.

Every sample is resized (shorter side) and centre-cropped to ``resolution``, float in [-1, 1],
``(3, T, H, W)``; a batch is ``(B, 3, T, H, W)`` (an image is ``T = 1``). A file that cannot be
decoded is skipped, counted once and logged; the run goes on.

Order is a pure function of (seed, epoch, position): each epoch is a seeded permutation, each
rank takes every ``world``-th index of it, and a video clip's start is drawn from an RNG seeded
by (seed, epoch, index). So the data position (epoch, cursor) is all a checkpoint needs to resume
exactly, and no loader worker processes are used.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

__all__ = [
    "DataConfig",
    "FolderSource",
    "MixedBatches",
    "SkipCounter",
    "load_folder_splits",
    "save_reconstructions",
]

logger = logging.getLogger(__name__)
Modality = Literal["image", "video"]


@dataclass
class DataConfig:
    """Where the data is and how it is cut.

    Attributes:
        image_dir: an imagefolder (``train/`` [+ ``test/``]); None for video-only training.
        video_dir: a videofolder of mp4s; None for image-only training.
        image_fraction: with both folders, the share of steps that train on an image batch.
        resolution: square side in pixels after resize + centre crop (a multiple of the stride).
        num_frames: frames per video clip, ``1 + temporal_stride * k``.
        frame_stride: take every n-th frame of the source video.
        batch_size: images per image batch.
        video_batch_size: clips per video batch.
        test_fraction: held-out share of ``train`` when the folder has no ``test`` split.
        eval_samples: at most this many held-out samples per modality are evaluated.
    """

    image_dir: str | None = "data/shapes"
    video_dir: str | None = None
    image_fraction: float = 0.5
    resolution: int = 64
    num_frames: int = 9
    frame_stride: int = 1
    batch_size: int = 8
    video_batch_size: int = 2
    test_fraction: float = 0.1
    eval_samples: int = 64


class SkipCounter:
    """Counts unreadable files (each once) and logs the first sighting of each."""

    def __init__(self) -> None:
        self.bad: set[str] = set()

    def add(self, name: str, err: BaseException) -> None:
        if name not in self.bad:
            self.bad.add(name)
            logger.warning("skipping unreadable sample %s (%s: %s)", name, type(err).__name__, err)

    def __len__(self) -> int:
        return len(self.bad)


def load_folder_splits(
    folder: str, modality: Modality, test_fraction: float, seed: int
) -> tuple[Any, Any | None]:
    """``(train, held_out)`` datasets of ``{"path", "bytes"}`` records from an image / video folder."""
    import datasets

    if not Path(folder).is_dir():
        raise FileNotFoundError(
            f"{modality} folder {folder!r} does not exist (make it with `grn make-data ...`)."
        )
    builder, column, feature = (
        ("imagefolder", "image", datasets.Image(decode=False))
        if modality == "image"
        else ("videofolder", "video", datasets.Video(decode=False))
    )
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # "Downloading data" bars for local files only confuse
    try:
        splits = datasets.load_dataset(builder, data_dir=folder)
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    splits = splits.cast_column(column, feature).select_columns([column])
    train = splits["train"]
    if "test" in splits:
        return train, splits["test"]
    if test_fraction <= 0 or len(train) < 2:
        return train, None
    parts = train.train_test_split(test_size=test_fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def _open(record: dict) -> Any:
    return io.BytesIO(record["bytes"]) if record.get("bytes") else record["path"]


def _resize_crop(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _to_pixels(frames: list[np.ndarray]) -> torch.Tensor:
    """List of ``(H, W, 3)`` uint8 frames -> ``(3, T, H, W)`` float in [-1, 1]."""
    arr = torch.from_numpy(np.stack(frames))  # (T, H, W, 3)
    return arr.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def decode_image(record: dict, size: int) -> torch.Tensor:
    with Image.open(_open(record)) as img:
        return _to_pixels([_resize_crop(img.convert("RGB"), size)])


def decode_video(
    record: dict, size: int, num_frames: int, frame_stride: int, rng: random.Random | None
) -> torch.Tensor:
    """A clip of ``num_frames`` frames; the start is random with ``rng``, else 0."""
    import av

    with av.open(_open(record)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    span = (num_frames - 1) * frame_stride + 1
    if len(frames) < span:
        raise ValueError(f"video has {len(frames)} frames, a clip needs {span}")
    start = rng.randint(0, len(frames) - span) if rng is not None else 0
    clip = frames[start : start + span : frame_stride]
    return _to_pixels([_resize_crop(f.convert("RGB"), size) for f in clip])


class FolderSource:
    """Batches from one dataset split, in a resumable seeded order, skipping unreadable files."""

    def __init__(
        self,
        dataset: Any,
        modality: Modality,
        cfg: DataConfig,
        seed: int,
        skipped: SkipCounter,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.dataset, self.modality, self.cfg, self.seed = dataset, modality, cfg, seed
        self.skipped, self.rank, self.world = skipped, rank, world
        self.column = modality
        self.batch_size = cfg.batch_size if modality == "image" else cfg.video_batch_size
        self.epoch, self.cursor = 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def _shard(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(len(self.dataset), generator=g)[self.rank :: self.world].tolist()

    def load(self, index: int, rng: random.Random | None) -> torch.Tensor | None:
        """Decode one sample, or None (counted) if it cannot be read."""
        record = self.dataset[index][self.column]
        name = record.get("path") or f"{self.modality}[{index}]"
        if name in self.skipped.bad:
            return None
        try:
            if self.modality == "image":
                return decode_image(record, self.cfg.resolution)
            return decode_video(record, self.cfg.resolution, self.cfg.num_frames, self.cfg.frame_stride, rng)
        except Exception as err:  # any decode failure (corrupt, truncated, too short) skips the file
            self.skipped.add(name, err)
            return None

    def next_batch(self) -> torch.Tensor:
        """``(B, 3, T, H, W)``; ``B`` may be smaller than the batch size where files were skipped."""
        samples: list[torch.Tensor] = []
        misses = 0
        while not samples:
            shard = self._shard()
            batch_size = min(self.batch_size, len(shard))
            if batch_size == 0 or self.cursor + batch_size > len(shard):  # drop the last partial batch
                self.epoch, self.cursor = self.epoch + 1, 0
                misses += 1
                if misses > 2:
                    raise RuntimeError(
                        f"no readable {self.modality} samples for rank {self.rank} (skipped {len(self.skipped)})."
                    )
                continue
            for index in shard[self.cursor : self.cursor + batch_size]:
                rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
                sample = self.load(index, rng)
                if sample is not None:
                    samples.append(sample)
            self.cursor += batch_size
        return torch.stack(samples)

    def eval_samples(self, limit: int) -> torch.Tensor | None:
        """Up to ``limit`` readable samples in dataset order (clips from frame 0): ``(N, 3, T, H, W)``."""
        samples = []
        for index in range(len(self.dataset)):
            if len(samples) >= limit:
                break
            sample = self.load(index, rng=None)
            if sample is not None:
                samples.append(sample)
        return torch.stack(samples) if samples else None


class MixedBatches:
    """Interleaves image and video batches; step ``s`` is an image step with probability
    ``image_fraction``, decided by an RNG seeded with (seed, s), so it is resumable."""

    def __init__(self, sources: dict[str, FolderSource], image_fraction: float, seed: int) -> None:
        if not sources:
            raise ValueError("no data: set data.image_dir and/or data.video_dir")
        self.sources, self.image_fraction, self.seed = sources, image_fraction, seed

    def modality_at(self, step: int) -> str:
        if len(self.sources) == 1:
            return next(iter(self.sources))
        return "image" if random.Random(f"mix:{self.seed}:{step}").random() < self.image_fraction else "video"

    def next_batch(self, step: int) -> tuple[str, torch.Tensor]:
        modality = self.modality_at(step)
        return modality, self.sources[modality].next_batch()

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {name: src.state_dict() for name, src in self.sources.items()}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        for name, src in self.sources.items():
            src.load_state_dict(state[name])


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in [-1, 1] -> ``(H, W, 3)`` uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _grid(originals: torch.Tensor, reconstructions: torch.Tensor, t: int, pad: int = 2) -> Image.Image:
    """Frame ``t`` of each sample: originals in the top row, reconstructions below."""
    n, _, _, h, w = originals.shape
    canvas = np.full((2 * h + 3 * pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for row, batch in enumerate((originals, reconstructions)):
        for i in range(n):
            y, x = pad + row * (h + pad), pad + i * (w + pad)
            canvas[y : y + h, x : x + w] = _to_uint8(batch[i, :, t])
    return Image.fromarray(canvas)


def save_reconstructions(
    originals: torch.Tensor, reconstructions: torch.Tensor, png: Path | None, gif: Path | None = None
) -> None:
    """Write the grid of frame 0 as ``png``; with ``gif`` and several frames, an animated grid too."""
    if png is not None:
        _grid(originals, reconstructions, 0).save(png)
    if gif is not None and originals.shape[2] > 1:
        frames = [_grid(originals, reconstructions, t) for t in range(originals.shape[2])]
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=125, loop=0)
