"""Single-object class images with every object centred on a latent cell's centre (session 14 probe).

The shapes-classes scenes, except that each object's centre is snapped to the nearest 8-px cell
centre (8 k + 4) of the stride-8 latent grid, so a class's codes no longer vary with the object's
sub-cell offset. Written as an imagefolder like ``grn make-data shapes`` (label = class index).

    python docs/results/session14/aligned/make_aligned.py data/shapes_aligned 8000
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

from unified_grn.data.shapes import class_index, sample_scene, split_rng
from unified_grn.data.shapes_render import render_scene


def snap(v: float, half: float, size: int) -> float:
    """The nearest cell centre to ``v`` that keeps a ``half``-wide object 2 px inside the image."""
    lo, hi = half + 2, size - half - 2
    centres = [8 * k + 4 for k in range(size // 8) if lo <= 8 * k + 4 <= hi]
    return float(min(centres, key=lambda c: abs(c - v)))


def main(out: str, n: int) -> None:
    folder = Path(out) / "train"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        scene = sample_scene(split_rng(0, i, "train"), 64, kind="single")
        objects = [
            replace(o, cx=snap(o.cx, o.size / 2, 64), cy=snap(o.cy, o.size / 2, 64)) for o in scene.objects
        ]
        scene = replace(scene, objects=objects)
        name = f"{i:06d}.png"
        render_scene(scene).save(folder / name)
        o = objects[0]
        rows.append({"file_name": name, "text": scene.caption, "label": class_index(o.color, o.shape)})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
