"""Scene sampling for the ``shapes`` world (``unified_grn.data.shapes`` states the contract).

``sample_scene`` draws a kind, a caption spec and a background, then rejection-samples each
object's side and centre (anywhere on the 1/4-px grid, or on a ``cell``-px grid's cell centres)
until the caption holds. Importable from ``unified_grn.data.shapes`` as before.
"""

from __future__ import annotations

import numpy as np

from unified_grn.data.shapes import (
    COLORS,
    MIN_IMAGE_SIZE,
    POSITIONS,
    RELATION_COUNTS,
    RELATIONS,
    SCENE_KINDS,
    SHAPES,
    SIDE_RANGE,
    CaptionSpec,
    Group,
    Scene,
    ShapeObject,
    gap,
    inside,
    position_box,
    position_holds,
    relation_holds,
    scene_errors,
    separated,
)


def _choice(rng: np.random.Generator, table: dict) -> object:
    keys = list(table)
    return keys[rng.choice(len(keys), p=np.array(list(table.values())) / sum(table.values()))]


def sample_background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A plain light grey-to-beige background colour (see the module docstring)."""
    light, warm = int(rng.integers(222, 243)), int(rng.integers(0, 15))
    return (light, light - warm // 2, light - warm)


def _sample_spec(rng: np.random.Generator, kind: str) -> CaptionSpec:
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    first = pairs[rng.integers(len(pairs))]
    if kind == "single":
        return CaptionSpec((Group(1, *first),))
    if kind == "single_position":
        return CaptionSpec((Group(1, *first),), position=str(_choice(rng, dict.fromkeys(POSITIONS, 1.0))))
    if kind == "count":
        return CaptionSpec((Group(int(rng.integers(2, 5)), *first),))
    if kind == "count_position":
        position = str(rng.choice(["left", "right", "top", "bottom"]))
        return CaptionSpec((Group(2, *first),), position=position)
    if kind == "relation":
        n_a, n_b = _choice(rng, RELATION_COUNTS)
        others = [p for p in pairs if p != first]
        second = others[rng.integers(len(others))]
        relation = str(_choice(rng, dict.fromkeys(RELATIONS, 1.0)))
        return CaptionSpec((Group(n_a, *first), Group(n_b, *second)), relation=relation)
    raise ValueError(f"unknown scene kind {kind!r}; expected one of {list(SCENE_KINDS)}")


def cell_centres(lo: float, hi: float, cell: int) -> np.ndarray:
    """The centres ``cell * k + cell / 2`` of a ``cell``-px grid that lie in ``[lo, hi]``."""
    first = int(np.ceil((lo - cell / 2) / cell))
    return cell * np.arange(first, int(np.floor((hi - cell / 2) / cell)) + 1) + cell / 2


def _coordinate(rng: np.random.Generator, lo: float, hi: float, cell: int | None) -> float | None:
    """A centre coordinate in ``[lo, hi]``: on the 1/4-px grid, or a grid cell's centre (None if none)."""
    if cell is None:
        return round(rng.uniform(lo, hi) * 4) / 4
    centres = cell_centres(lo, hi, cell)
    return float(centres[rng.integers(len(centres))]) if len(centres) else None


def _place(
    rng: np.random.Generator,
    color: str,
    shape: str,
    size: int,
    ok,
    position: str | None,
    single: bool,
    cell: int | None = None,
) -> ShapeObject | None:
    """Rejection-sample one object (centre on the 1/4-px grid or on a cell centre) with ``ok(object)``."""
    margin = gap(size)
    ranges = position_box(position, size, single)
    for _ in range(60):
        side = round(rng.uniform(*SIDE_RANGE) * size * 2) / 2
        lo, hi = margin + side / 2, size - margin - side / 2
        (x0, x1), (y0, y1) = ((max(lo, a), min(hi, b)) for a, b in ranges)
        if x0 > x1 or y0 > y1:
            continue
        cx, cy = _coordinate(rng, x0, x1, cell), _coordinate(rng, y0, y1, cell)
        if cx is None or cy is None:
            continue
        obj = ShapeObject(color, shape, cx, cy, side)
        if inside(obj, size, margin) and ok(obj):
            return obj
    return None


def _place_scene(
    rng: np.random.Generator, spec: CaptionSpec, size: int, cell: int | None = None
) -> list[ShapeObject] | None:
    """Place the objects of a spec (group 1, the relation's anchor, first) or give up (None)."""
    single = sum(g.count for g in spec.groups) == 1
    placed: dict[int, list[ShapeObject]] = {0: [], 1: []}
    for gi in sorted(range(len(spec.groups)), reverse=True):
        g = spec.groups[gi]
        for _ in range(g.count):

            def ok(o: ShapeObject, gi: int = gi) -> bool:
                others = placed[0] + placed[1]
                if not all(separated(o, p, gap(size)) for p in others):
                    return False
                if spec.position is not None and not position_holds(o, spec.position, size, single):
                    return False
                return (
                    gi != 0
                    or spec.relation is None
                    or all(relation_holds(o, b, spec.relation, size) for b in placed[1])
                )

            obj = _place(rng, g.color, g.shape, size, ok, spec.position, single, cell)
            if obj is None:
                return None
            placed[gi].append(obj)
    return placed[0] + placed[1]


def check_cell(cell: int | None, size: int) -> None:
    """Reject a placement grid that is not a positive even divisor of the image size, with the fix."""
    if cell is None:
        return
    if isinstance(cell, bool) or not isinstance(cell, int) or cell < 2 or cell % 2 or size % cell:
        raise ValueError(
            f"cell must be an even number of pixels >= 2 that divides the image size {size} "
            f"(the visual tokenizer's stride, e.g. 8), got {cell!r}; pass None for free placement"
        )


def sample_scene(
    rng: np.random.Generator,
    size: int = 64,
    kind: str | None = None,
    max_tries: int = 200,
    cell: int | None = None,
) -> Scene:
    """Draw one scene (kind from ``SCENE_KINDS`` unless given) from a numpy Generator.

    ``cell`` (pixels) centres every object on a cell of a ``cell``-px grid instead of anywhere on
    the 1/4-px grid; pass the visual tokenizer's spatial stride to align objects with its latent
    cells (the module docstring's "Cell-aligned placement"). ``None``, the default, draws exactly
    what earlier versions drew.
    """
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    check_cell(cell, size)
    kind = kind or str(_choice(rng, SCENE_KINDS))
    background = sample_background(rng)
    for _ in range(max_tries):
        spec = _sample_spec(rng, kind)
        objects = _place_scene(rng, spec, size, cell)
        if objects is not None:
            groups_of = [gi for gi, g in enumerate(spec.groups) for _ in range(g.count)]
            scene = Scene(kind, spec, objects, background, size, groups_of)
            assert not scene_errors(scene), scene_errors(scene)
            return scene
    hint = f" on a {cell}-px grid (too coarse for this size: use a finer cell)" if cell else ""
    raise RuntimeError(f"could not place a {kind!r} scene at size {size}{hint} in {max_tries} tries")
