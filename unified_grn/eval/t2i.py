"""GenEval-style text-to-image checker for the shapes world.

GenEval (Ghosh et al., 2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image
Alignment") detects the objects of a generated image and checks them against the prompt, per
task; its overall score is the unweighted mean of the task accuracies. The shapes world is
procedural, so the detector here is exact (``unified_grn.eval.detect``, the design validated in
``shared/research/data_eval_offline.md`` §5 (c)) and every prompt is a caption of its grammar,
parsed with ``shapes_captions.parse_caption``.

Tasks (disjoint, by the caption's structure; GenEval's names where they match):

- ``single_object``: one object, "a red circle";
- ``counting``: one group of 2-4, "three blue triangles";
- ``position``: a group and an absolute position, "a red circle on the left";
- ``relation``: two groups and a relation, "two red circles above a blue square" (GenEval's
  ``position`` task is relational; its ``two_object`` and ``color_attr`` are contained here).

Checks per prompt (booleans; ``position`` is ``None`` where the caption names none):

- ``presence``: every group's (colour, shape) is detected at least once;
- ``count``: every group's (colour, shape) is detected exactly its count times;
- ``color`` / ``shape``: the set of detected colours / shapes equals the caption's;
- ``no_extra``: the number of detected objects equals the caption's total (nothing undescribed);
- ``position``: absolute: every object of the group has its centroid in the named third of the
  image (centre: middle third on both axes); relation: for every pair (a in A, b in B) the
  centroid offset along the named axis exceeds ``RELATION_MARGIN`` (5 % of the image size, as in
  the validated design) and the offset along the other axis.

A prompt is ``correct`` when ``count``, ``no_extra`` and (where named) ``position`` hold; these
imply the others. A shapes ground-truth render passes by construction of the world's contract
(the generator keeps 15 % offsets and 6 % margins, wider than the checker's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from unified_grn.data.shapes import CaptionSpec, Group
from unified_grn.data.shapes_captions import parse_caption
from unified_grn.eval.detect import Detection, as_image_array, detect_objects

__all__ = [
    "CHECKS",
    "RELATION_MARGIN",
    "T2IReport",
    "T2IResult",
    "TASKS",
    "evaluate_t2i",
    "position_ok",
    "relation_ok",
    "score_t2i",
    "task_of",
    "summarize_t2i",
]

TASKS = ("single_object", "counting", "position", "relation")
CHECKS = ("presence", "count", "color", "shape", "no_extra", "position")
RELATION_MARGIN = 0.05  # min centroid offset along the named axis, fraction of the image size


@dataclass
class T2IResult:
    """The checker's verdict on one (image, prompt) pair."""

    prompt: str
    task: str
    checks: dict[str, bool | None]
    correct: bool
    detections: list[Detection] = field(default_factory=list)


@dataclass
class T2IReport:
    """Scores over a list of pairs: ``overall`` is GenEval's mean of the task accuracies.

    Attributes:
        overall: unweighted mean of ``tasks`` over the tasks present.
        tasks: accuracy (fraction of prompts ``correct``) per task present.
        task_counts: number of prompts per task.
        checks: rate of each check over the prompts where it applies.
        prompt_accuracy: fraction of all prompts ``correct`` (the note's "ALL").
        n: number of pairs.
    """

    overall: float
    tasks: dict[str, float]
    task_counts: dict[str, int]
    checks: dict[str, float]
    prompt_accuracy: float
    n: int
    results: list[T2IResult] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        keys = ("overall", "tasks", "task_counts", "checks", "prompt_accuracy", "n")
        return {k: getattr(self, k) for k in keys}


def task_of(spec: CaptionSpec) -> str:
    """The GenEval-style task of a parsed caption (see the module docstring)."""
    if spec.relation is not None:
        return "relation"
    if spec.position is not None:
        return "position"
    return "counting" if spec.groups[0].count > 1 else "single_object"


def _members(dets: list[Detection], g: Group) -> list[Detection]:
    return [d for d in dets if (d.color, d.shape) == (g.color, g.shape)]


def position_ok(d: Detection, position: str, width: int, height: int) -> bool:
    """True when the centroid lies in the named third of the image (both middle thirds for center)."""
    in_mid_x = width / 3 <= d.cx <= 2 * width / 3
    in_mid_y = height / 3 <= d.cy <= 2 * height / 3
    return {
        "left": d.cx < width / 3,
        "right": d.cx > 2 * width / 3,
        "top": d.cy < height / 3,
        "bottom": d.cy > 2 * height / 3,
        "center": in_mid_x and in_mid_y,
    }[position]


def relation_ok(a: Detection, b: Detection, relation: str, size: float) -> bool:
    """True when ``a <relation> b`` by centroids: a positive, dominant offset along the named axis."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    along, across = {
        "left_of": (-dx, dy),
        "right_of": (dx, dy),
        "above": (-dy, dx),
        "below": (dy, dx),
    }[relation]
    return along > RELATION_MARGIN * size and along > abs(across)


def _position_check(spec: CaptionSpec, dets: list[Detection], width: int, height: int) -> bool | None:
    if spec.relation is not None:
        a_objs, b_objs = _members(dets, spec.groups[0]), _members(dets, spec.groups[1])
        size = min(width, height)
        return bool(a_objs and b_objs) and all(
            relation_ok(a, b, spec.relation, size) for a in a_objs for b in b_objs
        )
    if spec.position is not None:
        objs = _members(dets, spec.groups[0])
        return bool(objs) and all(position_ok(d, spec.position, width, height) for d in objs)
    return None


def score_t2i(
    image: np.ndarray | Image.Image, prompt: str, background: tuple[int, int, int] | None = None
) -> T2IResult:
    """Check one generated image against its shapes-grammar prompt.

    Args:
        image: ``(H, W, 3)`` uint8 array (or float in [0, 1]) or PIL image.
        prompt: a caption of the shapes grammar (``ValueError`` otherwise).
        background: the background colour, if known; read from the border by default.
    """
    spec = parse_caption(prompt)
    img = as_image_array(image)
    dets = detect_objects(img, background)
    height, width = img.shape[:2]
    members = [_members(dets, g) for g in spec.groups]
    checks: dict[str, bool | None] = {
        "presence": all(len(m) >= 1 for m in members),
        "count": all(len(m) == g.count for m, g in zip(members, spec.groups)),
        "color": {d.color for d in dets} == {g.color for g in spec.groups},
        "shape": {d.shape for d in dets} == {g.shape for g in spec.groups},
        "no_extra": len(dets) == sum(g.count for g in spec.groups),
        "position": _position_check(spec, dets, width, height),
    }
    correct = bool(checks["count"] and checks["no_extra"] and checks["position"] is not False)
    return T2IResult(prompt, task_of(spec), checks, correct, dets)


def summarize_t2i(results: list[T2IResult]) -> T2IReport:
    """Aggregate per-prompt results into per-task, per-check and overall scores."""
    if not results:
        raise ValueError("no results to summarize")
    task_counts = Counter(r.task for r in results)
    tasks = {t: float(np.mean([r.correct for r in results if r.task == t])) for t in TASKS if task_counts[t]}
    checks = {}
    for c in CHECKS:
        values = [r.checks[c] for r in results if r.checks[c] is not None]
        if values:
            checks[c] = float(np.mean(values))
    return T2IReport(
        overall=float(np.mean(list(tasks.values()))),
        tasks=tasks,
        task_counts={t: task_counts[t] for t in tasks},
        checks=checks,
        prompt_accuracy=float(np.mean([r.correct for r in results])),
        n=len(results),
        results=results,
    )


def evaluate_t2i(pairs: Iterable[tuple[np.ndarray | Image.Image, str]]) -> T2IReport:
    """Score ``(image, prompt)`` pairs; return GenEval-style per-task and overall numbers."""
    return summarize_t2i([score_t2i(image, prompt) for image, prompt in pairs])
