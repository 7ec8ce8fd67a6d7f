"""Rendering of the ``shapes`` world and the pixel labelling the checkers use (the palette, geometry
and anti-aliasing contract in ``unified_grn.data.shapes``'s module docstring). Split from ``shapes``;
``from unified_grn.data.shapes import render_scene`` still works."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from unified_grn.data.shapes import COLORS, PALETTE, SHAPES, SUPERSAMPLE, Scene, ShapeObject

__all__ = ["label_pixels", "render_objects", "render_scene"]


def _draw_object(draw: ImageDraw.ImageDraw, o: ShapeObject, ss: int) -> None:
    x0, y0, x1, y1 = (round(v * ss) for v in o.bbox)
    box = (x0, y0, x1 - 1, y1 - 1)  # PIL boxes include their last pixel
    color = PALETTE[o.color]
    if o.shape == "circle":
        draw.ellipse(box, fill=color)
    elif o.shape == "square":
        draw.rectangle(box, fill=color)
    elif o.shape == "triangle":
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=color)
    else:
        raise ValueError(f"unknown shape {o.shape!r}; expected one of {SHAPES}")


def render_objects(
    objects: list[ShapeObject], background: tuple[int, int, int], size: int, supersample: int = SUPERSAMPLE
) -> Image.Image:
    """Draw objects on a plain background: supersampled, then box-filtered to ``size``."""
    canvas = Image.new("RGB", (size * supersample, size * supersample), tuple(background))
    draw = ImageDraw.Draw(canvas)
    for o in objects:
        _draw_object(draw, o, supersample)
    return canvas.resize((size, size), Image.Resampling.BOX)


def render_scene(scene: Scene, size: int | None = None) -> Image.Image:
    """Render a scene as an RGB PIL image; ``size`` rescales the scene's geometry if it differs."""
    size = size or scene.image_size
    s = size / scene.image_size
    objects = [ShapeObject(o.color, o.shape, o.cx * s, o.cy * s, o.size * s) for o in scene.objects]
    return render_objects(objects, scene.background, size)


def label_pixels(
    image: np.ndarray | Image.Image, background: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Label each pixel with a palette index (``COLORS`` order) or -1 for background.

    Anti-aliased edges are blends of an object colour and the background, so a pixel is assigned
    to the palette colour whose background-to-colour line passes closest to it, and counts as that
    colour when it lies at least half-way along the line. The background defaults to the median of
    the outermost pixel ring (always pure background in this world).
    """
    img = np.asarray(image, dtype=np.float32)[..., :3]  # (H, W, 3)
    if background is None:
        ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        background = tuple(np.median(ring, axis=0))
    bg = np.asarray(background, np.float32)
    dirs = np.asarray([PALETTE[c] for c in COLORS], np.float32) - bg  # (K, 3)
    diff = img - bg  # (H, W, 3)
    alpha = np.clip(diff @ dirs.T / (dirs * dirs).sum(-1), 0.0, 1.0)  # (H, W, K)
    resid = np.linalg.norm(diff[..., None, :] - alpha[..., None] * dirs, axis=-1)  # (H, W, K)
    best = resid.argmin(-1)
    best_alpha = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    return np.where(best_alpha >= 0.5, best, -1)
