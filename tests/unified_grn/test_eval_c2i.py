"""The C2I checker: every class recognised on ground truth, and wrong labels, extra objects or noise fail."""

from __future__ import annotations

import numpy as np
import pytest

from unified_grn.data import shapes as sh
from unified_grn.eval.c2i import evaluate_c2i, score_c2i

BG = (230, 228, 226)


@pytest.fixture(scope="module")
def class_images() -> list[tuple[np.ndarray, int]]:
    """Ground-truth single-object scenes: 120 sampled ones plus every class at a fixed place."""
    pairs = []
    for i in range(120):
        rng = sh.split_rng(9, i)
        scene = sh.sample_scene(rng, 64, kind=str(rng.choice(["single", "single_position"])))
        pairs.append((np.asarray(sh.render_scene(scene)), scene.label))
    for k, name in enumerate(sh.CLASS_NAMES):
        color, shape = name.split()
        obj = sh.ShapeObject(color, shape, 30.25, 33.5, 14.5)
        pairs.append((np.asarray(sh.render_objects([obj], BG, 64)), k))
    return pairs


def test_ground_truth_near_perfect(class_images):
    r = evaluate_c2i(class_images)
    print(f"C2I ground truth ({r.n} images): accuracy {r.accuracy:.3f}")
    assert r.accuracy >= 0.98 and r.single_object >= 0.98
    assert set(r.per_class) == set(sh.CLASS_NAMES) and min(r.per_class.values()) >= 0.9


def test_wrong_labels_score_zero(class_images):
    same_color_other_shape = [(im, (k // 3) * 3 + (k + 1) % 3) for im, k in class_images]
    r = evaluate_c2i(same_color_other_shape)
    assert r.accuracy == 0.0 and r.color_accuracy >= 0.98 and r.shape_accuracy == 0.0
    other_color = [(im, (k + 3) % 18) for im, k in class_images]
    r = evaluate_c2i(other_color)
    assert r.accuracy == 0.0 and r.color_accuracy == 0.0 and r.shape_accuracy >= 0.98


def test_extra_objects_blank_and_noise_fail(class_images):
    a = sh.ShapeObject("red", "circle", 16, 32, 14)
    b = sh.ShapeObject("red", "circle", 48, 32, 14)
    two = np.asarray(sh.render_objects([a, b], BG, 64))
    result = score_c2i(two, sh.class_index("red", "circle"))
    assert not result.correct and result.num_objects == 2 and result.color and result.shape
    blank = np.full((64, 64, 3), 230, np.uint8)
    assert not score_c2i(blank, 0).correct and score_c2i(blank, 0).num_objects == 0
    rng = np.random.default_rng(0)
    noisy = [
        (np.clip(im + rng.normal(0, 70, im.shape), 0, 255).astype(np.uint8), k) for im, k in class_images[:40]
    ]
    assert evaluate_c2i(noisy).accuracy <= 0.3


def test_label_range_checked(class_images):
    with pytest.raises(ValueError):
        score_c2i(class_images[0][0], len(sh.CLASS_NAMES))
