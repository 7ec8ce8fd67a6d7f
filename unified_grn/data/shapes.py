"""The procedural ``shapes`` world: captioned images of coloured circles, squares and triangles.

Everything below is a public contract: the checkers (``unified_grn.eval``) score generations
against it, so change it only together with them.

Palette (``PALETTE``, sRGB, saturated and distinct in hue)::

    red (215, 40, 40)   green (40, 165, 60)   blue (40, 80, 220)
    yellow (235, 200, 20)   purple (140, 55, 190)   orange (245, 125, 20)

Background: one plain colour per image, light and unsaturated, drawn per image as
``(L, L - w // 2, L - w)`` with ``L ~ U{222..242}`` and ``w ~ U{0..14}`` (light grey to light
beige). The outermost ring of pixels is always pure background (objects keep a gap from the
border), so a checker can read it there. ``shapes_render.label_pixels`` does that.

Geometry, in pixels of the final image (``size`` x ``size``, pixel (i, j) covers
``[j, j+1) x [i, i+1)``; any size >= ``MIN_IMAGE_SIZE``):

- ``center`` (cx, cy) is the centre of the object's bounding box; ``size`` is the bbox side. Both
  sit on the 1/4-px grid used for rendering (centres are multiples of 0.25 px, sides of 0.5 px),
  so the metadata describes the drawing exactly.
- circle: the disc inscribed in the bbox; square: the bbox itself (axis-aligned); triangle:
  upright isosceles, apex at the top middle of the bbox, base on its bottom edge.
- side in ``[0.16, 0.30] * size`` (10-19 px at 64 px).
- gap: bounding boxes are separated by at least ``gap(size) = max(2, 0.04 * size)`` px along x
  or y (so objects never touch or overlap), and keep the same gap from the border.
- rendered with 4x supersampling (PIL) and a box-filter downscale (anti-aliased edges).

Caption grammar (``format_caption`` / ``parse_caption``, in ``unified_grn.data.shapes_captions``)::

    caption  := group [" " relation " " group | " " position]
    group    := count " " colour " " noun
    count    := "a" | "an" (before "orange") | "two" | "three" | "four"
    noun     := shape (count 1) | shape + "s" (count > 1)
    relation := "to the left of" | "to the right of" | "above" | "below"
    position := "on the left" | "on the right" | "at the top" | "at the bottom" | "in the center"

Every object in the image is described by the caption (no extras), and the caption is true:

- relation "A rel B": for every pair (a in A, b in B) the bboxes are separated by at least the
  gap along the named axis, the centre offset along it is at least ``0.15 * size`` and at least
  1.5x the offset along the other axis. A checker should accept a relation when the centroid
  offset along the named axis is positive and dominates.
- position: every object's centre lies in the named third of the image (left: cx < size/3,
  right: cx > 2 size/3, top: cy < size/3, bottom: cy > 2 size/3, center: both coordinates in the
  middle third) with a margin of ``0.06 * size`` (so a triangle's area centroid, r/3 below its
  bbox centre, is inside too). A single object with left/right (top/bottom) also has its other
  coordinate in the middle third.

Scene kinds (``SCENE_KINDS``, drawn with these probabilities):

- ``single`` 0.25: one object, "a red circle".
- ``single_position`` 0.20: one object and a position, "a red circle on the left".
- ``count`` 0.20: 2, 3 or 4 (uniform) objects of one (colour, shape), "three blue triangles".
- ``count_position`` 0.05: 2 such objects and a position other than center, "two red squares
  at the top".
- ``relation`` 0.30: two groups with different (colour, shape) and a relation; group counts
  (1,1) 0.6, (2,1) 0.2, (1,2) 0.1, (3,1) 0.05, (2,2) 0.05: "two red circles above a blue square".

Class labels (``CLASS_NAMES``, 18 classes, colour-major): ``label = 3 * COLORS.index(colour) +
SHAPES.index(shape)``, i.e. 0 "red circle", 1 "red square", 2 "red triangle", 3 "green circle",
... 17 "orange triangle". Single-object images (kinds ``single`` and ``single_position``) carry
their label, every other image ``-1``.

Cell-aligned placement (``cell=``, e.g. ``grn make-data shapes --cell 8``): every object's centre
is drawn from the centres ``cell * k + cell / 2`` of a ``cell``-px grid instead of the 1/4-px grid;
everything else (sides, kinds, the caption contract) is unchanged. With the visual tokenizer's
stride as ``cell``, an object of a given side always covers its latent cells the same way, so its
codes do not depend on a sub-cell offset (docs/RESULTS.md, sessions 14-15). The default, ``None``,
draws exactly the scenes of earlier versions.

Determinism: sample ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])``
(split 0 = train, 1 = test), so it depends only on (seed, split, i), never on the data set size.

On disk (``write_shapes_dataset``): ``out_dir/train/NNNNNN.png`` + ``metadata.jsonl`` with fields
``file_name``, ``text`` (the caption), ``label`` (int) and ``scene`` (a JSON string of
``Scene.to_dict()``), optionally the same under ``out_dir/test``; it loads with
``datasets.load_dataset("imagefolder", data_dir=out_dir)``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unified_grn.data.folders import (  # noqa: F401 - re-exported: public names of this module
    SPLITS,
    prepare_split_dir,
    split_rng,
    split_sizes,
    write_split_folders,
)

logger = logging.getLogger(__name__)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 55, 190),
    "orange": (245, 125, 20),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CLASS_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
RELATIONS: dict[str, str] = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}
POSITIONS: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
SCENE_KINDS: dict[str, float] = {
    "single": 0.25,
    "single_position": 0.2,
    "count": 0.2,
    "count_position": 0.05,
    "relation": 0.3,
}
RELATION_COUNTS = {(1, 1): 0.6, (2, 1): 0.2, (1, 2): 0.1, (3, 1): 0.05, (2, 2): 0.05}  # (count A, count B)
SIDE_RANGE = (0.16, 0.30)  # object bbox side, fraction of the image size
RELATION_MARGIN = 0.15  # min centre offset along the named axis, fraction of the image size
RELATION_DOMINANCE = 1.5  # named-axis offset >= this times the other-axis offset
POSITION_MARGIN = 0.06  # centres keep this far (fraction of size) inside the named third
SUPERSAMPLE = 4
MIN_IMAGE_SIZE = 24


def gap(size: int) -> float:
    """Minimum free distance (px) between two bounding boxes, and between a bbox and the border."""
    return max(2.0, 0.04 * size)


def class_index(color: str, shape: str) -> int:
    """The class label of a (colour, shape) pair (see ``CLASS_NAMES``)."""
    return COLORS.index(color) * len(SHAPES) + SHAPES.index(shape)


@dataclass(frozen=True)
class ShapeObject:
    """One object: colour, shape, bbox centre (cx, cy) and bbox side, all in pixels."""

    color: str
    shape: str
    cx: float
    cy: float
    size: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)

    def to_dict(self) -> dict:
        return {
            "color": self.color,
            "shape": self.shape,
            "center": [self.cx, self.cy],
            "size": self.size,
            "bbox": list(self.bbox),
        }


@dataclass(frozen=True)
class Group:
    """A caption noun phrase: ``count`` objects of one colour and shape."""

    count: int
    color: str
    shape: str


@dataclass(frozen=True)
class CaptionSpec:
    """The structured content of a caption: one or two groups, a relation or a position."""

    groups: tuple[Group, ...]
    relation: str | None = None
    position: str | None = None

    def to_dict(self) -> dict:
        return {
            "groups": [asdict(g) for g in self.groups],
            "relation": self.relation,
            "position": self.position,
        }


@dataclass
class Scene:
    """A sampled scene: objects in caption order (group 0 first), background, image size."""

    kind: str
    spec: CaptionSpec
    objects: list[ShapeObject]
    background: tuple[int, int, int]
    image_size: int
    groups_of: list[int] = field(default_factory=list)  # group index of each object

    @property
    def caption(self) -> str:
        from unified_grn.data.shapes_captions import format_caption

        return format_caption(self.spec)

    @property
    def label(self) -> int:
        if len(self.objects) != 1:
            return -1
        return class_index(self.objects[0].color, self.objects[0].shape)

    def to_dict(self) -> dict:
        objects = [{**o.to_dict(), "group": g} for o, g in zip(self.objects, self.groups_of)]
        return {
            "kind": self.kind,
            "image_size": self.image_size,
            "background": list(self.background),
            **self.spec.to_dict(),
            "objects": objects,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        spec = CaptionSpec(tuple(Group(**g) for g in d["groups"]), d.get("relation"), d.get("position"))
        objects = [ShapeObject(o["color"], o["shape"], *o["center"], o["size"]) for o in d["objects"]]
        groups_of = [o["group"] for o in d["objects"]]
        return cls(d["kind"], spec, objects, tuple(d["background"]), d["image_size"], groups_of)


# ----------------------------------------------------------------------------- geometry


def separated(a: ShapeObject, b: ShapeObject, min_gap: float) -> bool:
    """True when the bboxes of a and b are at least ``min_gap`` apart along x or along y."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    return max(bx0 - ax1, ax0 - bx1) >= min_gap or max(by0 - ay1, ay0 - by1) >= min_gap


def inside(o: ShapeObject, size: int, margin: float) -> bool:
    """True when the bbox keeps ``margin`` px from every border of a ``size`` image."""
    x0, y0, x1, y1 = o.bbox
    return min(x0, y0) >= margin and max(x1, y1) <= size - margin


def relation_holds(a: ShapeObject, b: ShapeObject, relation: str, size: int) -> bool:
    """The generator's (strict) rule for "a <relation> b"; see the module docstring."""
    sign = -1.0 if relation in ("left_of", "above") else 1.0
    horizontal = relation in ("left_of", "right_of")
    d_axis = sign * ((a.cx - b.cx) if horizontal else (a.cy - b.cy))
    d_other = abs((a.cy - b.cy) if horizontal else (a.cx - b.cx))
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    clear = {"left_of": bx0 - ax1, "right_of": ax0 - bx1, "above": by0 - ay1, "below": ay0 - by1}[relation]
    return clear >= gap(size) and d_axis >= RELATION_MARGIN * size and d_axis >= RELATION_DOMINANCE * d_other


def position_box(position: str | None, size: int, single: bool = True) -> tuple[tuple[float, float], ...]:
    """The ranges ((x_lo, x_hi), (y_lo, y_hi)) a centre must lie in for ``position`` (with margin)."""
    m, third = POSITION_MARGIN * size, size / 3
    low, mid, high, full = (
        (0.0, third - m),
        (third + m, 2 * third - m),
        (2 * third + m, float(size)),
        (0.0, float(size)),
    )
    other = mid if single else full
    boxes = {None: (full, full), "left": (low, other), "right": (high, other), "top": (other, low)}
    return {**boxes, "bottom": (other, high), "center": (mid, mid)}[position]


def position_holds(o: ShapeObject, position: str, size: int, single: bool = True) -> bool:
    """The generator's (strict, with margin) rule for "<object> <position>"."""
    (xlo, xhi), (ylo, yhi) = position_box(position, size, single)
    return xlo <= o.cx <= xhi and ylo <= o.cy <= yhi


def scene_errors(scene: Scene) -> list[str]:
    """Every way in which a scene breaks the contract (empty when it is valid)."""
    errs, size, objs = [], scene.image_size, scene.objects
    for i, o in enumerate(objs):
        if not inside(o, size, gap(size)):
            errs.append(f"object {i} is not inside the canvas with a {gap(size):.2f} px margin")
        errs += [
            f"objects {j}, {i} closer than the gap" for j in range(i) if not separated(o, objs[j], gap(size))
        ]
    for gi, g in enumerate(scene.spec.groups):
        members = [o for o, k in zip(objs, scene.groups_of) if k == gi]
        if len(members) != g.count or any((o.color, o.shape) != (g.color, g.shape) for o in members):
            errs.append(f"group {gi} ({g}) does not match its objects")
    if len(scene.groups_of) != len(objs) or any(k >= len(scene.spec.groups) for k in scene.groups_of):
        errs.append("objects outside the caption's groups")
    if scene.spec.relation is not None:
        a_objs = [o for o, k in zip(objs, scene.groups_of) if k == 0]
        b_objs = [o for o, k in zip(objs, scene.groups_of) if k == 1]
        if not all(relation_holds(a, b, scene.spec.relation, size) for a in a_objs for b in b_objs):
            errs.append(f"relation {scene.spec.relation} does not hold")
    if scene.spec.position is not None:
        if not all(position_holds(o, scene.spec.position, size, single=len(objs) == 1) for o in objs):
            errs.append(f"position {scene.spec.position} does not hold")
    return errs


# ----------------------------------------------------------------------------- data set


def make_shapes_example(
    seed: int, index: int, size: int = 64, split: str = "train", cell: int | None = None
) -> dict:
    """Sample ``index`` of the shapes world: ``{"image", "text", "label", "scene"}`` (scene a dict)."""
    from unified_grn.data.shapes_render import render_scene
    from unified_grn.data.shapes_sampling import sample_scene

    scene = sample_scene(split_rng(seed, index, split), size, cell=cell)
    return dict(image=render_scene(scene), text=scene.caption, label=scene.label, scene=scene.to_dict())


def write_shapes_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    test_fraction: float = 0.0,
    overwrite: bool = False,
    progress: bool = False,
    cell: int | None = None,
) -> dict[str, int]:
    """Write an imagefolder (``train/`` and optionally ``test/``); return the split sizes."""
    split_sizes(n, test_fraction)  # validate before touching the disk
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    from unified_grn.data.shapes_sampling import check_cell

    check_cell(cell, size)

    def write_sample(path: Path, split: str, i: int, stem: str) -> dict:
        ex = make_shapes_example(seed, i, size, split, cell)
        ex["image"].save(path / f"{stem}.png")
        return dict(
            file_name=f"{stem}.png", text=ex["text"], label=ex["label"], scene=json.dumps(ex["scene"])
        )

    return write_split_folders(
        out_dir, n, test_fraction, write_sample, overwrite=overwrite, progress=progress, desc="shapes"
    )


def __getattr__(name: str):
    """Captions live in ``shapes_captions``, rendering in ``shapes_render``, sampling in
    ``shapes_sampling`` (all three import this module)."""
    if name in ("format_caption", "parse_caption"):
        from unified_grn.data import shapes_captions

        return getattr(shapes_captions, name)
    if name in ("label_pixels", "render_objects", "render_scene"):
        from unified_grn.data import shapes_render

        return getattr(shapes_render, name)
    if name in ("cell_centres", "check_cell", "sample_background", "sample_scene"):
        from unified_grn.data import shapes_sampling

        return getattr(shapes_sampling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
