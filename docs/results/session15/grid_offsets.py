"""Does a model draw its objects on the latent cells? (session 15, stage 17)

Class-to-image samples (``--per-class`` per class, default 5; the card's sampler: 16 steps,
guidance 2.5, temperature 1.05, seeds 0, 1, ...), every detected object's bounding-box centre, and
its distance along x and y from the nearest centre of the tokenizer's 8-px latent cells (8 k + 4);
then the shape accuracy of the objects within 1 px of a cell centre against the rest. True renders
with free placement are about 2.1 px off on average; cell-aligned ones 0.06 (the detector's
whole-pixel bounding box).

    HF_HUB_OFFLINE=1 python docs/results/session15/grid_offsets.py MODEL_DIR [MODEL_DIR ...] --out X.json
"""

import argparse
import json
import logging

import numpy as np
import torch

from unified_grn import AutoModelForGRN
from unified_grn.data.shapes import CLASS_NAMES, sample_scene, split_rng
from unified_grn.data.shapes_render import render_scene
from unified_grn.eval.detect import detect_objects

logger = logging.getLogger("grid_offsets")
CELL = 8


def cell_offset(det) -> np.ndarray:
    """A detection's bbox centre minus the nearest cell centre 8 k + 4, per axis, in [-4, 4)."""
    x0, y0, x1, y1 = det.bbox
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]) % CELL - CELL / 2


def cell_offsets(model_dir: str, per_class: int = 5, batch: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """Signed offsets ``(N, 2)`` (px) of every detected bbox centre from its nearest cell centre,
    and whether each detected object has its class's shape (``(N,)`` bool)."""
    model = AutoModelForGRN.from_pretrained(model_dir).eval()
    labels = [k for k in range(model.config.num_class_tokens) for _ in range(per_class)]
    offsets, right_shape = [], []
    for start in range(0, len(labels), batch):
        chunk = labels[start : start + batch]
        seeds = list(range(start, start + len(chunk)))
        out = model.generate(
            chunk, height=64, width=64, seed=seeds, num_steps=16, guidance_scale=2.5,
            temperature=1.05, progress_bar=False,
        )  # fmt: skip
        for label, image in zip(chunk, out.images):
            for det in detect_objects(image):
                right_shape.append(det.shape == CLASS_NAMES[label].split()[1])
                offsets.append(cell_offset(det))
    return np.array(offsets), np.array(right_shape)


def reference_offsets(cell: int | None, n: int = 90) -> np.ndarray:
    """The same measure on true renders of single-object class scenes (free or cell-aligned)."""
    offsets = []
    for i in range(n):
        scene = sample_scene(split_rng(0, i, "test"), 64, kind="single", cell=cell)
        for det in detect_objects(render_scene(scene)):
            offsets.append(cell_offset(det))
    return np.array(offsets)


def summary(offsets: np.ndarray, right_shape: np.ndarray | None = None) -> dict:
    dist = np.abs(offsets)
    out = {
        "objects": len(offsets),
        "mean_abs_offset_px": float(dist.mean()),
        "within_1px_both_axes": float(((dist <= 1.0).all(1)).mean()),
        "histogram_x_offset": np.histogram(offsets[:, 0], bins=8, range=(-4, 4))[0].tolist(),
    }
    if right_shape is not None:  # shape accuracy of the objects drawn on / off the cells
        on = (dist <= 1.0).all(1)
        for name, keep in (("on_cells", on), ("off_cells", ~on)):
            out[f"shape_accuracy_{name}"] = float(right_shape[keep].mean()) if keep.any() else None
            out[f"objects_{name}"] = int(keep.sum())
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-class", type=int, default=5, help="samples per class (default 5)")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = {"true renders, free placement": summary(reference_offsets(None))}
    result["true renders, --cell 8"] = summary(reference_offsets(CELL))
    result.update({m: summary(*cell_offsets(m, args.per_class)) for m in args.models})
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    logger.info(json.dumps(result, indent=1))
