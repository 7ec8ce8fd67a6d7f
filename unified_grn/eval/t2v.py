"""Text-to-video checker for the moving-shapes world: motion direction and object persistence.

The design validated in ``shared/research/data_eval_offline.md`` §5 (d) (100 % on ground truth,
0 % on time-reversed, static and frame-shuffled clips at 64 px), on this project's detector
(``unified_grn.eval.detect``, the image checker of GenEval-style T2I scoring, Ghosh et al.
2023). For each motion of the caption ("a red circle moving right and ..."):

- ``persistence``: exactly one object of its (colour, shape) is detected in at least
  ``MIN_TRACKED`` (75 %) of the frames, and its area varies little over them (coefficient of
  variation at most ``MAX_AREA_CV``): the object neither vanishes nor changes identity or size;
- ``direction``: a least-squares line through its centroids over the tracked frames has a
  slope along the commanded axis whose travel over the clip, ``slope * (T - 1)``, is at least
  ``MIN_TRAVEL`` (8 % of the frame size: 1 %/frame at T = 9, the note's threshold, scaled with
  the clip length so long clips are not held to a per-frame speed) and more than
  ``DOMINANCE`` (2) times the orthogonal slope;
- ``smoothness``: the largest residual of that line is below ``MAX_RESIDUAL`` (5 % of the size),
  which a frame-shuffled clip breaks.

``direction`` and ``smoothness`` also require ``persistence``. A clip is ``correct`` when every
motion passes all three and, in at least 75 % of the frames, the detector finds exactly as many
objects as the caption names (``no_extra``).

A diagnostic beside the score, as the T2I checker's colour / shape checks: ``direction_any_shape``
runs the same direction test with the shape ignored, on the largest object of the motion's colour
in each frame (tracked in at least ``MIN_TRACKED`` of the frames; no area test). A model that moves
the right colour the right way but draws the wrong shape, or lets the shape morph between frames,
passes it and fails ``direction``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from unified_grn.data.moving_shapes import DIRECTIONS, Motion, parse_video_caption
from unified_grn.eval.detect import Detection, as_image_array, detect_objects

__all__ = [
    "MotionResult",
    "T2VReport",
    "T2VResult",
    "evaluate_t2v",
    "score_detections",
    "score_motion",
    "score_t2v",
    "summarize_t2v",
]

MIN_TRACKED = 0.75  # fraction of frames with exactly one matching object
MAX_AREA_CV = 0.25  # std / mean of the tracked object's area
MIN_TRAVEL = 0.08  # fitted travel along the commanded axis over the clip, fraction of size
DOMINANCE = 2.0  # along-axis slope must exceed this times the orthogonal slope
MAX_RESIDUAL = 0.05  # max distance of a centroid from the fitted line, fraction of size


@dataclass
class MotionResult:
    """The verdict on one motion clause, with the measured numbers behind it."""

    motion: Motion
    persistence: bool
    direction: bool
    smoothness: bool
    tracked_fraction: float
    travel: float  # fitted displacement along the commanded axis over the clip, px
    drift: float  # fitted displacement across it over the clip, px (absolute)
    max_residual: float  # px
    direction_any_shape: bool = False  # the direction test on the largest object of its colour

    @property
    def correct(self) -> bool:
        return self.persistence and self.direction and self.smoothness


@dataclass
class T2VResult:
    """The checker's verdict on one (video, caption) pair."""

    caption: str
    motions: list[MotionResult]
    no_extra: bool
    correct: bool


@dataclass
class T2VReport:
    """Scores over a list of clips: per-motion rates and the fraction of clips fully correct."""

    overall: float
    direction: float
    persistence: float
    smoothness: float
    no_extra: float
    n: int
    direction_any_shape: float = 0.0
    results: list[T2VResult] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        keys = ("overall", "direction", "persistence", "smoothness", "no_extra", "direction_any_shape", "n")
        return {k: getattr(self, k) for k in keys}


def _as_video(video: np.ndarray) -> np.ndarray:
    arr = np.asarray(video)
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4) or arr.shape[0] < 2:
        raise ValueError(f"expected a (T, H, W, 3) video with T >= 2, got shape {arr.shape}")
    return np.stack([as_image_array(f) for f in arr])


def _matches(dets: list[Detection], motion: Motion) -> list[Detection]:
    return [d for d in dets if (d.color, d.shape) == (motion.color, motion.shape)]


def _fit_line(
    hits: list[tuple[int, Detection]], motion: Motion, num_frames: int
) -> tuple[float, float, float]:
    """``(travel, drift, max_residual)`` of a least-squares line through the hits' centroids."""
    t = np.array([h[0] for h in hits], np.float64)
    c = np.array([(d.cx, d.cy) for _, d in hits])  # (N, 2)
    slope, intercept = np.polyfit(t, c, 1)  # (2,), (2,)
    residual = float(np.linalg.norm(c - (t[:, None] * slope + intercept), axis=1).max())
    want = np.asarray(DIRECTIONS[motion.direction], np.float64)
    travel = float(slope @ want) * (num_frames - 1)
    drift = abs(float(slope @ want[::-1])) * (num_frames - 1)
    return travel, drift, residual


def _moves_right_way(travel: float, drift: float, size: float) -> bool:
    return travel >= MIN_TRAVEL * size and travel > DOMINANCE * drift


def _direction_any_shape(motion: Motion, frames: list[list[Detection]], size: float, num_frames: int) -> bool:
    hits = [
        (t, max(ms, key=lambda d: d.area))
        for t, dets in enumerate(frames)
        if (ms := [d for d in dets if d.color == motion.color])
    ]  # (frame, the largest detection of the motion's colour)
    if len(hits) < 2 or len(hits) / num_frames < MIN_TRACKED:
        return False
    travel, drift, _ = _fit_line(hits, motion, num_frames)
    return _moves_right_way(travel, drift, size)


def score_motion(
    motion: Motion, frames: list[list[Detection]], size: float, num_frames: int | None = None
) -> MotionResult:
    """Check one motion clause against per-frame detections (see the module docstring)."""
    num_frames = num_frames or len(frames)
    hits = [
        (t, ms[0]) for t, dets in enumerate(frames) if len(ms := _matches(dets, motion)) == 1
    ]  # (frame, detection) where the object is tracked
    tracked = len(hits) / num_frames
    any_shape = _direction_any_shape(motion, frames, size, num_frames)
    areas = np.array([d.area for _, d in hits])
    area_cv = float(areas.std() / areas.mean()) if len(hits) else np.inf
    persistence = tracked >= MIN_TRACKED and len(hits) >= 2 and area_cv <= MAX_AREA_CV
    if len(hits) < 2:
        return MotionResult(motion, False, False, False, tracked, 0.0, 0.0, np.inf, any_shape)
    travel, drift, residual = _fit_line(hits, motion, num_frames)
    direction = persistence and _moves_right_way(travel, drift, size)
    smoothness = persistence and residual < MAX_RESIDUAL * size
    return MotionResult(
        motion, persistence, direction, smoothness, tracked, travel, drift, residual, any_shape
    )


def score_t2v(video: np.ndarray, caption: str) -> T2VResult:
    """Check one generated clip against its moving-shapes caption.

    Args:
        video: ``(T, H, W, 3)`` uint8 frames (or float in [0, 1]), T >= 2.
        caption: a caption of the moving-shapes grammar (``ValueError`` otherwise).
    """
    frames = _as_video(video)
    return score_detections([detect_objects(f) for f in frames], caption, float(min(frames.shape[1:3])))


def score_detections(frames: list[list[Detection]], caption: str, size: float) -> T2VResult:
    """``score_t2v`` from per-frame detections (``detect_objects`` of each frame) and the frame size."""
    motions = parse_video_caption(caption)
    results = [score_motion(m, frames, size) for m in motions]
    no_extra = bool(np.mean([len(d) == len(motions) for d in frames]) >= MIN_TRACKED)
    return T2VResult(caption, results, no_extra, no_extra and all(r.correct for r in results))


def summarize_t2v(results: list[T2VResult]) -> T2VReport:
    """Aggregate per-clip results: per-motion rates, and ``overall`` = fraction of clips correct."""
    if not results:
        raise ValueError("no results to summarize")
    motions = [m for r in results for m in r.motions]
    return T2VReport(
        overall=float(np.mean([r.correct for r in results])),
        direction=float(np.mean([m.direction for m in motions])),
        persistence=float(np.mean([m.persistence for m in motions])),
        smoothness=float(np.mean([m.smoothness for m in motions])),
        no_extra=float(np.mean([r.no_extra for r in results])),
        n=len(results),
        direction_any_shape=float(np.mean([m.direction_any_shape for m in motions])),
        results=results,
    )


def evaluate_t2v(pairs: Iterable[tuple[np.ndarray, str]]) -> T2VReport:
    """Score ``(video, caption)`` pairs; return per-motion and per-clip rates."""
    return summarize_t2v([score_t2v(video, caption) for video, caption in pairs])
