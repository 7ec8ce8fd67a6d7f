"""The procedural ``moving-shapes`` world: short captioned videos of shapes moving in a direction.

A public contract like ``unified_grn.data.shapes`` (same palette, shapes, background range,
geometry conventions and renderer), which the motion checker scores against:

- ``num_frames = 1 + 4k`` with k >= 1 (default 9), ``size`` x ``size`` RGB frames (default 64).
- 1 or 2 objects (probability 0.5 each) of *different* colours (so each can be tracked by its
  colour alone), any shapes, bbox side in ``[0.16, 0.26] * size``.
- Each object moves at constant velocity in one direction of ``DIRECTIONS`` (left, right, up,
  down: image x grows to the right, y downwards). Its total displacement over the clip is drawn
  from ``[0.25, 0.45] * size`` and rounded so that the per-frame step is a multiple of 1/4 px
  (the renderer's grid), so the per-frame centres in the metadata are exact.
- Every frame keeps the ``shapes`` rules: objects fully inside with the border gap, bounding boxes
  separated by ``gap(size)`` along x or y (checked at every frame and along the whole straight
  path, so ``render_video`` at another frame count keeps them apart too).
- Caption: ``motion (" and " motion)?`` with ``motion := ("a" | "an") colour shape "moving"
  direction``, e.g. "a red circle moving right and a blue square moving up"
  (``format_video_caption`` / ``parse_video_caption``).

Determinism: clip ``i`` of a split depends only on (seed, split, i), as in ``shapes``.

On disk (``write_moving_shapes_dataset``): ``out_dir/train/NNNNNN.mp4`` + ``metadata.jsonl`` with
``file_name``, ``text`` and ``scene`` (a JSON string of ``MovingScene.to_dict()``: per object the
colour, shape, size, direction, speed in px/frame, and the centre of every frame). Videos are
H.264 (``libx264``, ``yuv444p``, ``crf=0``: lossless up to the RGB<->YUV rounding, at most 2 grey
levels here), at ``FPS`` frames per second; where the av wheel has no libx264 we fall back to
``mpeg4`` (yuv420p, qscale 1) with a warning. Browsers do not play 4:4:4 H.264: for files meant
for people, ``write_video(..., pix_fmt="yuv420p")`` (chroma at half resolution blurs colour edges).

Loading: ``datasets.load_dataset("videofolder", data_dir=out_dir)`` reads it, but the datasets
library decodes video with ``torchcodec``, which does not work on these machines. Cast the
column to ``datasets.Video(decode=False)`` (``load_moving_shapes`` does) and decode the file with
``read_video`` (PyAV) instead.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

from unified_grn.data.shapes import (
    COLORS,
    MIN_IMAGE_SIZE,
    SHAPES,
    ShapeObject,
    gap,
    prepare_split_dir,
    render_objects,
    sample_background,
    split_rng,
    split_sizes,
)

logger = logging.getLogger(__name__)

DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
NUM_OBJECTS: dict[int, float] = {1: 0.5, 2: 0.5}
MOVING_SIDE_RANGE = (0.16, 0.26)  # bbox side, fraction of the image size
MOTION_RANGE = (0.25, 0.45)  # total displacement over the clip, fraction of the image size
STEP_GRID = 0.25  # per-frame displacement is a multiple of this (px)
FPS = 8
DEFAULT_NUM_FRAMES = 9


def check_num_frames(num_frames: int) -> None:
    """Raise ``ValueError`` unless ``num_frames = 1 + 4k`` with k >= 1."""
    if num_frames < 5 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be 1 + 4k with k >= 1 (5, 9, 13, ...), got {num_frames}")


@dataclass(frozen=True)
class Motion:
    """One clause of a video caption: an object and its direction."""

    color: str
    shape: str
    direction: str


@dataclass(frozen=True)
class MovingObject:
    """An object moving on a straight line from ``start`` (first frame) to ``end`` (last frame)."""

    color: str
    shape: str
    size: float
    direction: str
    start: tuple[float, float]
    end: tuple[float, float]

    def at(self, s: float) -> ShapeObject:
        """The object at clip fraction ``s`` in [0, 1] (0 = first frame, 1 = last frame)."""
        cx = self.start[0] + s * (self.end[0] - self.start[0])
        cy = self.start[1] + s * (self.end[1] - self.start[1])
        return ShapeObject(self.color, self.shape, cx, cy, self.size)


@dataclass
class MovingScene:
    """A sampled clip: moving objects, background, frame size and frame count."""

    objects: list[MovingObject]
    background: tuple[int, int, int]
    image_size: int
    num_frames: int

    @property
    def motions(self) -> tuple[Motion, ...]:
        return tuple(Motion(o.color, o.shape, o.direction) for o in self.objects)

    @property
    def caption(self) -> str:
        return format_video_caption(self.motions)

    def frame_objects(self, t: int, num_frames: int | None = None) -> list[ShapeObject]:
        """The still objects of frame ``t`` of a ``num_frames`` rendering (default: the scene's)."""
        num_frames = num_frames or self.num_frames
        return [o.at(t / (num_frames - 1)) for o in self.objects]

    def to_dict(self) -> dict:
        objects = []
        for o in self.objects:
            centers = [
                [f.cx, f.cy] for f in (o.at(t / (self.num_frames - 1)) for t in range(self.num_frames))
            ]
            distance = abs(o.end[0] - o.start[0]) + abs(o.end[1] - o.start[1])
            objects.append(
                {
                    "color": o.color,
                    "shape": o.shape,
                    "size": o.size,
                    "direction": o.direction,
                    "speed": distance / (self.num_frames - 1),
                    "start": list(o.start),
                    "end": list(o.end),
                    "centers": centers,
                }
            )
        return {
            "image_size": self.image_size,
            "num_frames": self.num_frames,
            "background": list(self.background),
            "objects": objects,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MovingScene:
        objects = [
            MovingObject(
                o["color"], o["shape"], o["size"], o["direction"], tuple(o["start"]), tuple(o["end"])
            )
            for o in d["objects"]
        ]
        return cls(objects, tuple(d["background"]), d["image_size"], d["num_frames"])


# ----------------------------------------------------------------------------- captions


def format_video_caption(motions: tuple[Motion, ...] | list[Motion]) -> str:
    """Write a caption: "a red circle moving right and a blue square moving up"."""
    parts = [
        f"{'an' if m.color[0] in 'aeiou' else 'a'} {m.color} {m.shape} moving {m.direction}" for m in motions
    ]
    return " and ".join(parts)


_MOTION_RE = r"(a|an) ({c}) ({s}) moving ({d})".format(
    c="|".join(COLORS), s="|".join(SHAPES), d="|".join(DIRECTIONS)
)
_VIDEO_CAPTION_RE = re.compile(rf"^{_MOTION_RE}(?: and {_MOTION_RE})?$")


def parse_video_caption(text: str) -> tuple[Motion, ...]:
    """Parse a moving-shapes caption into its motions; ``ValueError`` outside the grammar."""
    norm = " ".join(text.strip().lower().rstrip(".").split())
    m = _VIDEO_CAPTION_RE.match(norm)
    if m is None:
        raise ValueError(
            f"caption {text!r} is not in the moving-shapes grammar (see unified_grn.data.moving_shapes)"
        )
    motions = tuple(Motion(*m.group(i + 2, i + 3, i + 4)) for i in (0, 4) if m.group(i + 1) is not None)
    if format_video_caption(motions) != norm:
        raise ValueError(f"caption {text!r}: article does not agree with its colour")
    return motions


# ----------------------------------------------------------------------------- sampling


def _sample_object(
    rng: np.random.Generator, color: str, shape: str, size: int, num_frames: int
) -> MovingObject | None:
    """One object whose whole path stays inside the frame, or None if it cannot fit."""
    margin = gap(size)
    side = round(rng.uniform(*MOVING_SIDE_RANGE) * size * 2) / 2
    direction = str(rng.choice(list(DIRECTIONS)))
    dx, dy = DIRECTIONS[direction]
    step = max(STEP_GRID, round(rng.uniform(*MOTION_RANGE) * size / (num_frames - 1) / STEP_GRID) * STEP_GRID)
    dist = step * (num_frames - 1)
    lo, hi = margin + side / 2, size - margin - side / 2
    # along the motion axis the start leaves room for the whole path
    x_lo, x_hi = lo + max(0, -dx) * dist, hi - max(0, dx) * dist
    y_lo, y_hi = lo + max(0, -dy) * dist, hi - max(0, dy) * dist
    # start on the 1/4-px grid, inside the allowed range
    x_lo, y_lo = np.ceil(x_lo * 4) / 4, np.ceil(y_lo * 4) / 4
    x_hi, y_hi = np.floor(x_hi * 4) / 4, np.floor(y_hi * 4) / 4
    if x_lo > x_hi or y_lo > y_hi:
        return None
    cx = float(np.clip(round(rng.uniform(x_lo, x_hi) * 4) / 4, x_lo, x_hi))
    cy = float(np.clip(round(rng.uniform(y_lo, y_hi) * 4) / 4, y_lo, y_hi))
    return MovingObject(color, shape, side, direction, (cx, cy), (cx + dx * dist, cy + dy * dist))


def path_fractions(num_frames: int, dense: int = 129) -> np.ndarray:
    """Clip fractions checked for overlap: every frame and a dense grid along the path."""
    return np.union1d(np.linspace(0, 1, num_frames), np.linspace(0, 1, dense))


def moving_scene_errors(scene: MovingScene) -> list[str]:
    """Every way in which a clip breaks the contract (empty when it is valid)."""
    errs, size, objs, g = [], scene.image_size, scene.objects, gap(scene.image_size)
    if len({o.color for o in objs}) != len(objs):
        errs.append("two objects share a colour")
    s = path_fractions(scene.num_frames)[:, None, None]  # (S, 1, 1)
    start, end = np.array([o.start for o in objs]), np.array([o.end for o in objs])  # (N, 2)
    centers = start + s * (end - start)  # (S, N, 2)
    half = np.array([o.size / 2 for o in objs])[None, :, None]  # (1, N, 1)
    outside = ((centers - half) < g) | ((centers + half) > size - g)  # (S, N, 2)
    errs += [
        f"object {i} leaves the frame (border gap {g:.2f} px)" for i in np.nonzero(outside.any((0, 2)))[0]
    ]
    for i in range(len(objs)):
        for j in range(i):
            apart = np.abs(centers[:, i] - centers[:, j]) - (half[0, i] + half[0, j])  # (S, 2)
            if not (apart.max(-1) >= g).all():
                errs.append(f"objects {j}, {i} come closer than the gap")
    return errs


def sample_moving_scene(
    rng: np.random.Generator, size: int = 64, num_frames: int = DEFAULT_NUM_FRAMES, max_tries: int = 200
) -> MovingScene:
    """Draw one clip from a numpy Generator."""
    check_num_frames(num_frames)
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    background = sample_background(rng)
    n_obj = int(rng.choice(list(NUM_OBJECTS), p=list(NUM_OBJECTS.values())))
    for _ in range(max_tries):
        colors = [COLORS[i] for i in rng.choice(len(COLORS), n_obj, replace=False)]
        objects = [_sample_object(rng, c, str(rng.choice(SHAPES)), size, num_frames) for c in colors]
        if any(o is None for o in objects):
            continue
        scene = MovingScene(objects, background, size, num_frames)
        if not moving_scene_errors(scene):
            return scene
    raise RuntimeError(
        f"could not place a {n_obj}-object clip ({num_frames} frames, {size} px) in {max_tries} tries"
    )


# ----------------------------------------------------------------------------- video


def render_video(scene: MovingScene, num_frames: int | None = None, size: int | None = None) -> np.ndarray:
    """Render a clip as ``(T, H, W, 3)`` uint8; other ``num_frames`` / ``size`` re-time / rescale it."""
    num_frames = num_frames or scene.num_frames
    size = size or scene.image_size
    k = size / scene.image_size
    frames = []
    for t in range(num_frames):
        objs = [
            ShapeObject(o.color, o.shape, o.cx * k, o.cy * k, o.size * k)
            for o in scene.frame_objects(t, num_frames)
        ]
        frames.append(np.asarray(render_objects(objs, scene.background, size)))
    return np.stack(frames)  # (T, H, W, 3)


def make_moving_shapes_example(
    seed: int, index: int, size: int = 64, num_frames: int = DEFAULT_NUM_FRAMES, split: str = "train"
) -> dict:
    """Clip ``index``: ``{"video": (T, H, W, 3) uint8, "text", "scene"}`` (scene a dict)."""
    scene = sample_moving_scene(split_rng(seed, index, split), size, num_frames)
    return {"video": render_video(scene), "text": scene.caption, "scene": scene.to_dict()}


def write_video(frames: np.ndarray, path: str | Path, fps: int = FPS, pix_fmt: str = "yuv444p") -> str:
    """Write ``(T, H, W, 3)`` uint8 frames to an mp4 with PyAV; return the codec used.

    ``yuv444p`` (default) keeps full-resolution colour; ``yuv420p`` plays in browsers.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if "libx264" in av.codecs_available:
        codec, options = "libx264", {"crf": "0", "preset": "veryfast"}
    else:  # pragma: no cover - depends on the av build
        logger.warning("libx264 is not in this PyAV build; writing mpeg4 (yuv420p, lossy colour edges)")
        codec, pix_fmt, options = "mpeg4", "yuv420p", {"qscale": "1"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.options = pix_fmt, options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed frames
    return codec


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file with PyAV: ``(T, H, W, 3)`` uint8 RGB."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} has no decodable video frames")
    return np.stack(frames)


def load_moving_shapes(data_dir: str | Path, **kwargs):
    """``load_dataset("videofolder")`` with the video column as paths (decode with ``read_video``)."""
    import datasets

    ds = datasets.load_dataset("videofolder", data_dir=str(data_dir), **kwargs)
    return ds.cast_column("video", datasets.Video(decode=False))


def write_moving_shapes_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    num_frames: int = DEFAULT_NUM_FRAMES,
    test_fraction: float = 0.0,
    fps: int = FPS,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, int]:
    """Write a videofolder (``train/`` and optionally ``test/``); return the split sizes."""
    sizes = split_sizes(n, test_fraction)
    check_num_frames(num_frames)
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    width = max(6, len(str(n - 1)))
    for split, count in sizes.items():
        path = prepare_split_dir(Path(out_dir), split, overwrite)
        with open(path / "metadata.jsonl", "w") as meta:
            for i in tqdm(range(count), desc=f"moving-shapes/{split}", disable=not progress, unit="clip"):
                ex = make_moving_shapes_example(seed, i, size, num_frames, split)
                name = f"{i:0{width}d}.mp4"
                write_video(ex["video"], path / name, fps)
                meta.write(
                    json.dumps({"file_name": name, "text": ex["text"], "scene": json.dumps(ex["scene"])})
                    + "\n"
                )
        logger.info("wrote %d moving-shapes clips to %s", count, path)
    return sizes
