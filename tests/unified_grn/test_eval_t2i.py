"""The GenEval-style T2I checker: near-perfect on ground-truth renders, and it cannot pass everything.

Measured (seed 5, 300 scenes at 64 px): ground truth overall 1.000 (every task and check 1.000);
captions of other scenes 0.003; Gaussian noise sigma 60 about 0.07; Gaussian blur radius 3
about 0.02 (sigma 12 noise and radius 0.7 blur still 1.000).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from unified_grn.data import shapes as sh
from unified_grn.eval.detect import connected_components, detect_objects
from unified_grn.eval.t2i import TASKS, evaluate_t2i, score_t2i, task_of

N_GT = 300
BG = (232, 228, 224)


@pytest.fixture(scope="module")
def gt() -> tuple[list[sh.Scene], list[np.ndarray], list[str]]:
    scenes = [sh.sample_scene(sh.split_rng(5, i), 64) for i in range(N_GT)]
    return scenes, [np.asarray(sh.render_scene(s)) for s in scenes], [s.caption for s in scenes]


def render(objects: list[sh.ShapeObject], size: int = 64) -> np.ndarray:
    return np.asarray(sh.render_objects(objects, BG, size))


def test_ground_truth_near_perfect(gt):
    _, images, captions = gt
    report = evaluate_t2i(zip(images, captions))
    print(f"T2I ground truth ({N_GT} scenes, 64 px): {report.to_dict()}")
    assert set(report.tasks) == set(TASKS)
    assert report.overall >= 0.98 and report.prompt_accuracy >= 0.98
    assert all(v >= 0.98 for v in report.tasks.values()), report.tasks
    assert all(v >= 0.98 for v in report.checks.values()), report.checks
    assert report.overall == pytest.approx(np.mean(list(report.tasks.values())))  # GenEval's mean


def test_ground_truth_at_32_px():
    scenes = [sh.sample_scene(sh.split_rng(6, i), 32) for i in range(80)]
    report = evaluate_t2i((sh.render_scene(s), s.caption) for s in scenes)  # PIL images accepted
    assert report.overall >= 0.98, report.to_dict()


def test_wrong_captions_score_near_zero(gt):
    """Negative control: every image against the caption of another scene."""
    _, images, captions = gt
    shifted = captions[7:] + captions[:7]
    report = evaluate_t2i(zip(images, shifted))
    print(f"T2I wrong captions: overall {report.overall:.3f}, prompts {report.prompt_accuracy:.3f}")
    assert report.prompt_accuracy <= 0.03 and report.overall <= 0.05


def test_heavy_noise_and_blur_drop_the_score(gt):
    _, images, captions = gt
    images, captions = images[:100], captions[:100]
    rng = np.random.default_rng(0)
    noisy = [np.clip(im + rng.normal(0, 60, im.shape), 0, 255).astype(np.uint8) for im in images]
    blurred = [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(3))) for im in images]
    mild = [np.clip(im + rng.normal(0, 8, im.shape), 0, 255).astype(np.uint8) for im in images]
    scores = {
        name: evaluate_t2i(zip(ims, captions)).overall
        for name, ims in (("noise60", noisy), ("blur3", blurred), ("noise8", mild))
    }
    print(f"T2I corrupted: {scores}")
    assert scores["noise60"] <= 0.3 and scores["blur3"] <= 0.3
    assert scores["noise8"] >= 0.95  # mild noise is not a reason to fail


def test_each_check_catches_its_error():
    a = sh.ShapeObject("red", "circle", 16, 32, 14)
    b = sh.ShapeObject("blue", "square", 48, 32, 14)
    c = sh.ShapeObject("red", "circle", 32, 12, 14)
    two = render([a, c])
    r = score_t2i(two, "three red circles")
    assert r.checks["presence"] and not r.checks["count"] and not r.correct
    r = score_t2i(render([a, b]), "a red circle")
    assert r.checks["presence"] and not r.checks["no_extra"] and not r.checks["color"] and not r.correct
    r = score_t2i(render([a]), "a red square")
    assert not r.checks["shape"] and not r.checks["presence"] and r.checks["color"]
    assert score_t2i(render([a, b]), "a red circle to the left of a blue square").correct
    r = score_t2i(render([a, b]), "a red circle to the right of a blue square")
    assert r.checks["count"] and r.checks["position"] is False and not r.correct
    assert score_t2i(render([a]), "a red circle on the left").correct
    assert not score_t2i(render([a]), "a red circle on the right").correct
    assert not score_t2i(render([]), "a red circle").checks["presence"]
    assert score_t2i(render([a]), "a red circle").checks["position"] is None


def test_blob_that_is_no_shape_fails():
    im = Image.new("RGB", (256, 256), BG)
    ImageDraw.Draw(im).ellipse((60, 100, 200, 170), fill=sh.PALETTE["green"])  # a 2:1 ellipse
    img = np.asarray(im.resize((64, 64), Image.Resampling.BOX))
    (det,) = detect_objects(img)
    assert det.color == "green" and det.shape is None
    assert not any(score_t2i(img, f"a green {s}").correct for s in sh.SHAPES)


def test_detections_match_scene_geometry(gt):
    scenes, images, _ = gt
    for scene, img in list(zip(scenes, images))[:40]:
        dets = detect_objects(img)
        assert len(dets) == len(scene.objects)
        for o in scene.objects:
            d = min(dets, key=lambda d: (d.cx - o.cx) ** 2 + (d.cy - o.cy) ** 2)
            dy = o.size / 6 if o.shape == "triangle" else 0.0  # area centroid below the bbox centre
            assert (d.color, d.shape) == (o.color, o.shape)
            assert abs(d.cx - o.cx) < 0.3 and abs(d.cy - o.cy - dy) < 0.3, (d, o)
            area = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}[o.shape] * o.size**2
            assert abs(d.area - area) <= 0.05 * area + 1


def test_connected_components_eight_connected():
    labels = -np.ones((6, 6), int)
    labels[0, 0] = labels[1, 1] = labels[2, 2] = 0  # a diagonal: one component
    labels[4, 4] = labels[4, 5] = 0  # another
    labels[0, 5] = 1  # another colour
    ids = connected_components(labels)
    assert ids[0, 0] == ids[1, 1] == ids[2, 2] != ids[4, 4] == ids[4, 5]
    assert len(np.unique(ids[ids >= 0])) == 3 and (ids[labels < 0] == -1).all()


def test_image_inputs_and_task_routing():
    img = render([sh.ShapeObject("yellow", "triangle", 32, 32, 16)])
    assert score_t2i(img.astype(np.float32) / 255, "a yellow triangle").correct  # floats in [0, 1]
    assert score_t2i(Image.fromarray(img), "a yellow triangle").correct
    with pytest.raises(ValueError):
        score_t2i(img, "a pink hexagon")
    routes = {
        "a red circle": "single_object",
        "two red circles": "counting",
        "a red circle at the top": "position",
        "a red circle above a blue square": "relation",
    }
    assert {c: task_of(sh.parse_caption(c)) for c in routes} == routes
