"""Class-to-image checker for the shapes world: is the generated object of class ``k``?

Class ``k`` of ``shapes.CLASS_NAMES`` is one (colour, shape) pair, ``k = 3 * colour + shape``,
and a class image shows exactly one such object. The detector is the one of the GenEval-style
T2I checker (Ghosh et al. 2023; ``unified_grn.eval.detect``, the design validated in
``shared/research/data_eval_offline.md`` §5 (c)). A sample is ``correct`` when exactly one object
is detected and its (colour, shape) is the class's. Diagnostics read the largest detected object:
``color`` / ``shape`` say whether its colour / shape is the class's, so a report separates
"right colour, wrong shape" from "nothing recognisable".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from unified_grn.data.shapes import CLASS_NAMES
from unified_grn.eval.detect import Detection, detect_objects

__all__ = ["C2IReport", "C2IResult", "evaluate_c2i", "score_c2i"]


@dataclass
class C2IResult:
    """The verdict on one (image, class) pair."""

    label: int
    correct: bool
    color: bool  # the largest object has the class's colour
    shape: bool  # the largest object has the class's shape
    num_objects: int
    detections: list[Detection] = field(default_factory=list)


@dataclass
class C2IReport:
    """Scores over a list of samples.

    Attributes:
        accuracy: fraction ``correct`` (exactly one object, of the class's colour and shape).
        color_accuracy, shape_accuracy: rates of the largest object's colour / shape matching.
        single_object: fraction with exactly one detected object.
        per_class: accuracy per class name present.
        n: number of samples.
    """

    accuracy: float
    color_accuracy: float
    shape_accuracy: float
    single_object: float
    per_class: dict[str, float]
    n: int
    results: list[C2IResult] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        keys = ("accuracy", "color_accuracy", "shape_accuracy", "single_object", "per_class", "n")
        return {k: getattr(self, k) for k in keys}


def score_c2i(image: np.ndarray | Image.Image, label: int) -> C2IResult:
    """Check one generated image against its class label (``0 <= label < len(CLASS_NAMES)``)."""
    if not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    color, shape = CLASS_NAMES[int(label)].split()
    dets = detect_objects(image)
    largest = max(dets, key=lambda d: d.area, default=None)
    correct = len(dets) == 1 and (dets[0].color, dets[0].shape) == (color, shape)
    return C2IResult(
        label=int(label),
        correct=correct,
        color=largest is not None and largest.color == color,
        shape=largest is not None and largest.shape == shape,
        num_objects=len(dets),
        detections=dets,
    )


def evaluate_c2i(pairs: Iterable[tuple[np.ndarray | Image.Image, int]]) -> C2IReport:
    """Score ``(image, label)`` pairs; return the class accuracy and its diagnostics."""
    results = [score_c2i(image, label) for image, label in pairs]
    if not results:
        raise ValueError("no pairs to evaluate")
    per_class = {
        CLASS_NAMES[k]: float(np.mean([r.correct for r in results if r.label == k]))
        for k in sorted({r.label for r in results})
    }
    return C2IReport(
        accuracy=float(np.mean([r.correct for r in results])),
        color_accuracy=float(np.mean([r.color for r in results])),
        shape_accuracy=float(np.mean([r.shape for r in results])),
        single_object=float(np.mean([r.num_objects == 1 for r in results])),
        per_class=per_class,
        n=len(results),
        results=results,
    )
