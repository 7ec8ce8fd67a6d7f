"""Single-object class images with every object centred on a latent cell's centre (session 14 probe).

The shapes-classes scenes, except that each object's centre is snapped to the nearest 8-px cell
centre (8 k + 4) of the stride-8 latent grid, so a class's codes no longer vary with the object's
sub-cell offset. Written as an imagefolder like ``grn make-data shapes`` (label = class index).

    python docs/results/session14/aligned/make_aligned.py data/shapes_aligned 8000
"""

import sys
from dataclasses import replace
from pathlib import Path

from unified_grn.data.folders import write_split_folders
from unified_grn.data.shapes import sample_scene, split_rng
from unified_grn.data.shapes_render import render_scene


def snap(v: float, half: float, size: int) -> float:
    """The nearest cell centre to ``v`` that keeps a ``half``-wide object 2 px inside the image."""
    lo, hi = half + 2, size - half - 2
    centres = [8 * k + 4 for k in range(size // 8) if lo <= 8 * k + 4 <= hi]
    return float(min(centres, key=lambda c: abs(c - v)))


def write_sample(folder: Path, split: str, i: int, stem: str) -> dict:
    """One shapes-classes scene with its object snapped to a cell centre; its metadata row."""
    scene = sample_scene(split_rng(0, i, split), 64, kind="single")
    objects = [
        replace(o, cx=snap(o.cx, o.size / 2, 64), cy=snap(o.cy, o.size / 2, 64)) for o in scene.objects
    ]
    scene = replace(scene, objects=objects)
    render_scene(scene).save(folder / f"{stem}.png")
    return {"file_name": f"{stem}.png", "text": scene.caption, "label": scene.label}


if __name__ == "__main__":
    write_split_folders(
        sys.argv[1], int(sys.argv[2]), 0.0, write_sample, overwrite=True, desc="shapes-aligned"
    )
