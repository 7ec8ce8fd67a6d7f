"""The procedural shapes and moving-shapes worlds keep their documented contract.

Checked from the metadata and, independently, from the pixels (a nearest-palette-line labelling
and an 8-connected component count written here with numpy, so scipy is not needed).
"""

from __future__ import annotations

import colorsys
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest

from unified_grn.data import moving_shapes as ms
from unified_grn.data import shapes as sh

N_META = 400  # scenes checked from metadata
N_PIXELS = 60  # scenes checked from pixels


def components(labels: np.ndarray) -> np.ndarray:
    """8-connected components of equal non-negative labels: an id per pixel, -1 for background."""
    h, w = labels.shape
    big = h * w
    ids = np.where(labels >= 0, np.arange(big).reshape(h, w), big)
    padded_labels = np.pad(labels, 1, constant_values=-1)
    while True:  # propagate the minimum id through same-label neighbours until stable
        padded = np.pad(ids, 1, constant_values=big)
        new = ids.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                nb = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                same = padded_labels[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == labels
                new = np.where(same & (labels >= 0), np.minimum(new, nb), new)
        if np.array_equal(new, ids):
            return np.where(labels >= 0, ids, -1)
        ids = new


def coverage(img: np.ndarray, background: list[int], obj: dict) -> np.ndarray:
    """Fraction of each pixel covered by ``obj`` (its colour's blend weight), zero outside its bbox."""
    bg = np.asarray(background, np.float64)
    direction = np.asarray(sh.PALETTE[obj["color"]], np.float64) - bg
    alpha = np.clip((img - bg) @ direction / (direction @ direction), 0, 1)  # (H, W)
    x0, y0, x1, y1 = obj["bbox"]
    mask = np.zeros_like(alpha)
    mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
    return alpha * mask


def shape_area(shape: str, side: float) -> float:
    return {"circle": np.pi * side**2 / 4, "square": side**2, "triangle": side**2 / 2}[shape]


# ----------------------------------------------------------------------------- shapes: contract


def test_palette_and_classes_contract():
    assert sh.COLORS == ("red", "green", "blue", "yellow", "purple", "orange")
    assert sh.SHAPES == ("circle", "square", "triangle")
    assert len(sh.CLASS_NAMES) == 18 and sh.CLASS_NAMES[:4] == (
        "red circle",
        "red square",
        "red triangle",
        "green circle",
    )
    for i, name in enumerate(sh.CLASS_NAMES):
        assert sh.class_index(*name.split()) == i
    hsv = {c: colorsys.rgb_to_hsv(*(v / 255 for v in rgb)) for c, rgb in sh.PALETTE.items()}
    assert all(s > 0.7 and v > 0.6 for _, s, v in hsv.values()), hsv  # saturated
    hues = sorted(h * 360 for h, _, _ in hsv.values())
    assert min(np.diff(hues + [hues[0] + 360])) > 18, hues  # distinct in hue
    rng = np.random.default_rng(0)
    for _ in range(200):
        bg = sh.sample_background(rng)
        assert min(bg) >= 208 and max(bg) - min(bg) <= 14, bg  # light and unsaturated


def test_deterministic_and_independent_of_dataset_size():
    a, b = sh.make_shapes_example(7, 3), sh.make_shapes_example(7, 3)
    assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"])) and a["text"] == b["text"]
    assert a["scene"] == b["scene"]
    other = [sh.make_shapes_example(8, i)["scene"] for i in range(5)]
    assert other != [sh.make_shapes_example(7, i)["scene"] for i in range(5)]
    assert sh.make_shapes_example(7, 3, split="test")["scene"] != a["scene"]


def test_scenes_from_metadata():
    kinds = Counter()
    for i in range(N_META):
        scene = sh.sample_scene(sh.split_rng(1, i))
        kinds[scene.kind] += 1
        assert sh.scene_errors(scene) == []
        size, g = scene.image_size, sh.gap(scene.image_size)
        for j, o in enumerate(scene.objects):
            x0, y0, x1, y1 = o.bbox
            assert g <= x0 and g <= y0 and x1 <= size - g and y1 <= size - g
            for p in scene.objects[:j]:  # bboxes apart by >= gap along x or y: no touching
                q0, r0, q1, r1 = p.bbox
                assert max(q0 - x1, x0 - q1) >= g or max(r0 - y1, y0 - r1) >= g
        check_caption_is_true(scene)
    for kind, p in sh.SCENE_KINDS.items():  # every kind is drawn, at about its probability
        assert abs(kinds[kind] / N_META - p) < 0.07, kinds


def check_caption_is_true(scene: sh.Scene) -> None:
    spec = sh.parse_caption(scene.caption)
    assert spec == scene.spec
    assert sum(g.count for g in spec.groups) == len(scene.objects)  # no undescribed objects
    want = Counter((g.color, g.shape) for g in spec.groups for _ in range(g.count))
    assert Counter((o.color, o.shape) for o in scene.objects) == want
    size = scene.image_size
    if spec.relation:
        a_objs = [o for o, k in zip(scene.objects, scene.groups_of) if k == 0]
        b_objs = [o for o, k in zip(scene.objects, scene.groups_of) if k == 1]
        for a in a_objs:
            for b in b_objs:
                dx, dy = a.cx - b.cx, a.cy - b.cy
                along, across = {
                    "left_of": (-dx, dy),
                    "right_of": (dx, dy),
                    "above": (-dy, dx),
                    "below": (dy, dx),
                }[spec.relation]
                assert along >= 0.15 * size and along > abs(across), (scene.caption, a, b)
    if spec.position:
        for o in scene.objects:
            tri = o.size / 6 if o.shape == "triangle" else 0.0  # area centroid below the bbox centre
            for cy in (o.cy, o.cy + tri):
                ok = {
                    "left": o.cx < size / 3,
                    "right": o.cx > 2 * size / 3,
                    "top": cy < size / 3,
                    "bottom": cy > 2 * size / 3,
                    "center": abs(o.cx - size / 2) < size / 6 and abs(cy - size / 2) < size / 6,
                }[spec.position]
                assert ok, (scene.caption, o)
    assert scene.label == (
        sh.class_index(scene.objects[0].color, scene.objects[0].shape) if len(scene.objects) == 1 else -1
    )


@pytest.mark.parametrize("size", [64, 32, 96])
def test_scenes_from_pixels(size):
    for i in range(N_PIXELS if size == 64 else 15):
        ex = sh.make_shapes_example(2, i, size)
        img = np.asarray(ex["image"])
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        labels = sh.label_pixels(img)
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        assert (border == -1).all()  # everything stays inside
        ids = components(labels)
        objects = ex["scene"]["objects"]
        for ci, color in enumerate(sh.COLORS):
            comps = np.unique(ids[labels == ci])
            mine = [o for o in objects if o["color"] == color]
            assert len(comps) == len(mine), (ex["text"], color)  # separate blobs: no touching
            for o in mine:  # the object's coverage has its area and its centre
                cov = coverage(img, ex["scene"]["background"], o)
                area = shape_area(o["shape"], o["size"]) * (size / ex["scene"]["image_size"]) ** 2
                assert abs(cov.sum() - area) <= 0.05 * area + 1, (ex["text"], o, cov.sum())
                ys, xs = np.mgrid[:size, :size] + 0.5
                cx = (cov * xs).sum() / cov.sum()
                assert abs(cx - o["center"][0]) < 0.1, (ex["text"], o)


def test_pixel_check_detects_touching_objects():
    """The component count used above would catch objects that touch (a negative control)."""
    bg = (230, 230, 230)
    apart = [sh.ShapeObject("red", "square", 20, 32, 12), sh.ShapeObject("red", "square", 35, 32, 12)]
    touching = [sh.ShapeObject("red", "square", 20, 32, 12), sh.ShapeObject("red", "square", 32, 32, 12)]
    for objects, want in ((apart, 2), (touching, 1)):
        labels = sh.label_pixels(np.asarray(sh.render_objects(objects, bg, 64)))
        assert len(np.unique(components(labels)[labels == 0])) == want
    assert not sh.separated(*touching, sh.gap(64)) and sh.separated(*apart, sh.gap(64))


def test_caption_grammar_round_trip_and_errors():
    examples = [
        "a red circle",
        "an orange square",
        "three blue triangles",
        "a red circle to the left of a green triangle",
        "a yellow square below a purple circle",
        "two red circles above a blue square",
        "a green circle in the center",
        "two purple squares at the bottom",
    ]
    for text in examples:
        assert sh.format_caption(sh.parse_caption(text)) == text
    spec = sh.parse_caption("  Two Red Circles ABOVE a blue square. ")
    assert (
        spec.groups == (sh.Group(2, "red", "circle"), sh.Group(1, "blue", "square"))
        and spec.relation == "above"
    )
    bad = [
        "a orange circle",
        "an red circle",
        "two red circle",
        "a red circles",
        "a pink circle",
        "a red circle above a red circle",
        "a red hexagon",
        "a red circle on the left above a blue square",
        "five red circles",
        "",
    ]
    for text in bad:
        with pytest.raises(ValueError):
            sh.parse_caption(text)


def test_scene_dict_round_trip_and_rescale():
    scene = sh.sample_scene(sh.split_rng(3, 0), kind="relation")
    again = sh.Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert again.to_dict() == scene.to_dict()
    assert np.array_equal(np.asarray(sh.render_scene(again)), np.asarray(sh.render_scene(scene)))
    assert sh.render_scene(scene, 128).size == (128, 128)
    with pytest.raises(ValueError):
        sh.sample_scene(np.random.default_rng(0), size=8)


def test_imagefolder_loads(tmp_path):
    sizes = sh.write_shapes_dataset(tmp_path / "d", n=12, seed=0, test_fraction=0.25)
    assert sizes == {"train": 9, "test": 3}
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 9 and ds["test"].num_rows == 3
    assert {"image", "text", "label", "scene"} <= set(ds["train"].column_names)
    row = ds["train"][4]
    ref = sh.make_shapes_example(0, 4)
    assert (
        row["text"] == ref["text"]
        and row["label"] == ref["label"]
        and json.loads(row["scene"]) == ref["scene"]
    )
    assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(ref["image"]))
    small = sh.write_shapes_dataset(tmp_path / "s", n=4, seed=0)
    assert small == {"train": 4}
    lines = (tmp_path / "s" / "train" / "metadata.jsonl").read_text().splitlines()
    big = (tmp_path / "d" / "train" / "metadata.jsonl").read_text().splitlines()
    assert lines == big[:4]  # sample i does not depend on n
    with pytest.raises(FileExistsError):
        sh.write_shapes_dataset(tmp_path / "s", n=2, seed=0)
    assert sh.write_shapes_dataset(tmp_path / "s", n=2, seed=0, overwrite=True) == {"train": 2}
    assert len(list((tmp_path / "s" / "train").glob("*.png"))) == 2


# ----------------------------------------------------------------------------- moving shapes


def track(video: np.ndarray, color: str) -> np.ndarray:
    """Centroid (x, y) of one colour in every frame: (T, 2)."""
    out = []
    for frame in video:
        ys, xs = np.nonzero(sh.label_pixels(frame) == sh.COLORS.index(color))
        assert len(xs) > 0
        out.append((xs.mean() + 0.5, ys.mean() + 0.5))
    return np.asarray(out)


def test_moving_scenes_contract():
    for i in range(60):
        scene = ms.sample_moving_scene(sh.split_rng(0, i), num_frames=9)
        assert ms.moving_scene_errors(scene) == []
        assert ms.parse_video_caption(scene.caption) == scene.motions
        d = scene.to_dict()
        for o in d["objects"]:
            c = np.asarray(o["centers"])  # (T, 2)
            assert c.shape == (9, 2)
            step = np.diff(c, axis=0)
            assert np.allclose(step, step[0]) and np.allclose(
                np.abs(step).sum(1), o["speed"]
            )  # constant velocity
            assert np.allclose(np.sign(step[0]), ms.DIRECTIONS[o["direction"]])
            assert np.allclose(c * 4, np.round(c * 4))  # on the renderer's 1/4-px grid
        for t in range(9):
            frame = sh.Scene("check", sh.CaptionSpec(()), scene.frame_objects(t), scene.background, 64, [])
            assert [e for e in sh.scene_errors(frame) if "group" not in e] == []


def test_moving_caption_grammar():
    text = "a red circle moving right and an orange square moving up"
    assert ms.format_video_caption(ms.parse_video_caption(text)) == text
    for bad in [
        "a orange circle moving up",
        "a red circle moving sideways",
        "a red circle",
        "two red circles moving up",
    ]:
        with pytest.raises(ValueError):
            ms.parse_video_caption(bad)


def test_moving_deterministic_and_frame_counts():
    a, b = ms.make_moving_shapes_example(4, 2), ms.make_moving_shapes_example(4, 2)
    assert np.array_equal(a["video"], b["video"]) and a["text"] == b["text"]
    assert not np.array_equal(a["video"], ms.make_moving_shapes_example(5, 2)["video"])
    for t in (5, 9, 13):
        video = ms.make_moving_shapes_example(0, 1, size=32, num_frames=t)["video"]
        assert video.shape == (t, 32, 32, 3) and video.dtype == np.uint8
    scene = ms.sample_moving_scene(sh.split_rng(0, 1))
    assert ms.render_video(scene, num_frames=17, size=48).shape == (17, 48, 48, 3)
    for t in (0, 1, 4, 8, 10):
        with pytest.raises(ValueError):
            ms.check_num_frames(t)


def test_mp4_round_trip_keeps_direction(tmp_path):
    for i in range(8):
        ex = ms.make_moving_shapes_example(6, i, num_frames=9)
        path = tmp_path / f"{i}.mp4"
        ms.write_video(ex["video"], path)
        video = ms.read_video(path)
        assert video.shape == ex["video"].shape
        assert np.abs(video.astype(int) - ex["video"]).max() <= 3  # near-lossless
        for motion, meta in zip(ms.parse_video_caption(ex["text"]), ex["scene"]["objects"]):
            c = track(video, motion.color)
            slope = np.polyfit(np.arange(len(c)), c, 1)[0]  # (2,) px per frame in x, y
            want = np.asarray(ms.DIRECTIONS[motion.direction])
            along, across = slope @ want, abs(slope @ want[::-1])
            assert along > 0.01 * 64 and along > 5 * across, (ex["text"], slope)
            if motion.shape != "triangle":  # the area centroid of a triangle sits lower
                assert np.abs(c - np.asarray(meta["centers"])).max() < 0.6


def test_videofolder_loads(tmp_path):
    sizes = ms.write_moving_shapes_dataset(tmp_path / "v", n=5, seed=0, num_frames=5, test_fraction=0.2)
    assert sizes == {"train": 4, "test": 1}
    ds = ms.load_moving_shapes(tmp_path / "v", cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 4 and ds["test"].num_rows == 1
    row = ds["train"][2]
    ref = ms.make_moving_shapes_example(0, 2, num_frames=5)
    assert row["text"] == ref["text"] and json.loads(row["scene"]) == ref["scene"]
    assert ms.read_video(row["video"]["path"]).shape == (5, 64, 64, 3)


@pytest.mark.parametrize(("size", "cell"), [(64, 8), (96, 8), (96, 16)])
def test_cell_aligned_scenes_keep_the_contract(size, cell):
    kinds, offsets = Counter(), Counter()
    for i in range(300):
        scene = sh.sample_scene(sh.split_rng(5, i), size, cell=cell)
        kinds[scene.kind] += 1
        assert sh.scene_errors(scene) == []
        check_caption_is_true(scene)
        for o in scene.objects:  # every centre is a cell centre; sides stay free
            assert o.cx % cell == cell / 2 and o.cy % cell == cell / 2, (scene.caption, o)
            offsets[(o.cx // cell, o.cy // cell)] += 1
    assert set(kinds) == set(sh.SCENE_KINDS)  # every kind can still be placed
    assert len(offsets) >= (size // cell - 2) ** 2 // 2  # and objects use much of the grid


def test_golden_scenes_are_unchanged():
    """Scenes recorded before ``cell`` existed (commit 886c7cd): the default draws them exactly,
    so every data set and token cache made earlier stays reproducible."""
    from unified_grn.data.shapes_chat import make_shapes_chat_example

    golden = json.loads((Path(__file__).parent / "golden" / "shapes_scenes.json").read_text())
    shapes = [sh.make_shapes_example(0, i, split=s)["scene"] for s in ("train", "test") for i in range(6)]
    chat = [[im["scene"] for im in make_shapes_chat_example(0, i)["images"]] for i in range(4)]
    assert json.loads(json.dumps({"shapes": shapes, "shapes_chat": chat})) == golden


def test_cell_none_draws_the_free_placement_and_bad_cells_are_rejected():
    free = [sh.sample_scene(sh.split_rng(9, i)) for i in range(50)]
    assert any(o.cx % 8 != 4 for s in free for o in s.objects)  # free placement is not on the grid
    for bad in (0, 3, 7, 12, True, 8.0):
        with pytest.raises(ValueError, match="divides the image size"):
            sh.sample_scene(sh.split_rng(0, 0), 64, cell=bad)
    with pytest.raises(RuntimeError, match="16-px grid.*finer cell"):  # no cell centre in the middle third
        sh.sample_scene(sh.split_rng(0, 0), 64, kind="single_position", cell=16, max_tries=5)
    rendered = sh.make_shapes_example(1, 2, cell=8)
    assert all(o["center"][0] % 8 == 4 for o in rendered["scene"]["objects"])
