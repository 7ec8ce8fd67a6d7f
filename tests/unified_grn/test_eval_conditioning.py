"""unified_grn.eval.conditioning: the loss gap between the true and an altered condition."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_grn

from unified_grn.collator import GRNCollator, GRNSample
from unified_grn.data.shapes import CLASS_NAMES, Scene, make_shapes_example
from unified_grn.eval.conditioning import (
    SHAPES_SWAPS,
    _fixed_corruption,
    condition_gap,
    shapes_condition_gap,
    swap_caption,
    swap_class,
    swap_scene,
)

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _bits(seed: int, grid=(1, 2, 2)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (*grid, 16, 4), generator=g, dtype=torch.uint8)  # GRN-tiny: C=16, M=4


def test_swaps_agree_on_every_test_scene_and_cycle():
    for i in range(200):
        scene = Scene.from_dict(make_shapes_example(0, i, split="test")["scene"])
        for attribute, period in (("shape", 3), ("colour", 6)):
            swapped = swap_scene(scene, attribute)
            assert swapped.caption == swap_caption(scene.caption, attribute)
            assert swapped.caption != scene.caption
            if scene.label >= 0:
                assert swapped.label == swap_class(scene.label, attribute) != scene.label
            back = scene
            for _ in range(period):
                back = swap_scene(back, attribute)
            assert back.caption == scene.caption and back.objects == scene.objects


def test_swap_examples_and_errors():
    assert swap_caption("an orange triangle", "colour") == "a red triangle"
    assert (
        swap_caption("a red circle above a purple square", "colour")
        == "a green circle above an orange square"
    )
    assert swap_caption("four blue squares", "shape") == "four blue triangles"
    assert swap_caption("four blue squares", "colour") == "four yellow squares"
    assert CLASS_NAMES[swap_class(CLASS_NAMES.index("red circle"), "shape")] == "red square"
    assert CLASS_NAMES[swap_class(CLASS_NAMES.index("orange square"), "colour")] == "red square"
    for fn in (swap_caption, swap_class):
        with pytest.raises(ValueError, match="'shape' or 'colour'"):
            fn("a red circle" if fn is swap_caption else 0, "size")


def test_identity_variant_has_zero_gap_and_modes_are_restored(caplog):
    model = build_tiny_grn(num_class_tokens=4).train()
    codes = [_bits(i) for i in range(5)]
    with caplog.at_level(logging.INFO, logger="unified_grn.eval.conditioning"):
        report = condition_gap(
            model, codes, [0, 1, 2, 3, 0], {"same": lambda k: k, "next": lambda k: (k + 1) % 4}, batch_size=2
        )
    # the summary line formats (a bad %-argument only shows as a "Logging error" on stderr)
    assert f"true {report['true']:.4f}" in caplog.records[-1].getMessage()
    assert model.training  # put back as it was
    assert report["gaps"]["same"] == 0.0 and report["variants"]["same"] == report["true"]
    assert report["gaps"]["next"] != 0.0 and report["n"] == 5
    assert len(report["per_round"]) == 4 and all(0 < v < 5 for v in report["per_round"])
    assert report["gaps_per_round"]["same"] == [0.0] * 4
    # every block is one 1x2x2 image, so the mean over rounds is the block-mean gap
    by_round = report["gaps_per_round"]["next"]
    assert any(v != 0 for v in by_round) and sum(by_round) / 4 == pytest.approx(
        report["gaps"]["next"], abs=1e-5
    )
    assert report["gap_stderr"] is None and report["repeats"] == 1
    again = condition_gap(model.eval(), codes, [0, 1, 2, 3, 0], {}, batch_size=2)
    assert again["true"] == report["true"] and not model.training  # same seed, same draws; eval kept
    more = condition_gap(model, codes, [0, 1, 2, 3, 0], {"same": lambda k: k}, batch_size=2, repeats=3)
    assert more["gap_stderr"] == {"same": 0.0} and more["gaps"]["same"] == 0.0 and more["repeats"] == 3
    assert more["true"] != report["true"]  # two more draws enter the mean
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        condition_gap(model, codes, [0, 1, 2, 3, 0], {}, repeats=0)


def test_a_model_trained_to_follow_its_class_shows_a_gap_an_untrained_one_does_not():
    torch.manual_seed(0)
    model = build_tiny_grn(num_class_tokens=2, seed=3)
    patterns = [_bits(10), _bits(11)]  # class k always shows pattern k
    labels = [0, 1] * 4
    codes = [patterns[k] for k in labels]
    swap = {"other": lambda k: 1 - k}
    before = condition_gap(model, codes, labels, swap, seed=5)
    collator = GRNCollator.from_model(model, condition_drop_prob=0.0)
    batch = collator([GRNSample.class_to_image(k, c, model.vocab) for k, c in zip(labels, codes)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        loss = model(**batch.as_dict(), generator=torch.Generator().manual_seed(step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = condition_gap(model, codes, labels, swap, seed=5)
    assert abs(before["gaps"]["other"]) < 0.02, before
    assert after["gaps"]["other"] > 0.1 and after["true"] < before["true"], after
    # one noise level at a time: with no bit kept the class is all there is; kept bits help
    blind = condition_gap(model, codes, labels, swap, seed=5, kept_fraction=0.0)
    rich = condition_gap(model, codes, labels, swap, seed=5, kept_fraction=0.9)
    assert blind["kept_fraction"] == 0.0 and after["kept_fraction"] is None
    assert blind["gaps"]["other"] > 0.1 and rich["true"] < blind["true"]
    assert rich["gaps"]["other"] < blind["gaps"]["other"]


def test_fixed_kept_fraction_corrupts_at_that_rate():
    model = build_tiny_grn(num_class_tokens=2)
    collator = GRNCollator.from_model(model, condition_drop_prob=0.0)
    batch = collator([GRNSample.class_to_image(k, _bits(k), model.vocab) for k in (0, 1, 0, 1)])
    fixed = _fixed_corruption(model, batch, 0.5, torch.Generator().manual_seed(0))
    assert fixed["visual_inputs"].shape == batch.visual_codes.shape
    assert fixed["visual_inputs"].dtype == batch.visual_codes.dtype
    assert fixed["kept_fraction"].shape == (4,) and bool(((fixed["kept_fraction"] - 0.5).abs() < 0.1).all())
    same = (fixed["visual_inputs"] == batch.visual_codes).float().mean().item()
    assert 0.65 < same < 0.85  # kept half, plus half of the redrawn bits by chance
    none = _fixed_corruption(model, batch, 0.0, torch.Generator().manual_seed(0))
    assert float(none["kept_fraction"].max()) == 0.0
    with pytest.raises(ValueError, match="kept_fraction must be in"):
        condition_gap(model, [_bits(0)], [0], {}, kept_fraction=1.0)


def test_bad_conditions_are_named():
    model = build_tiny_grn(num_class_tokens=2)
    with pytest.raises(ValueError, match="outside this model's 2 class tokens"):
        condition_gap(model, [_bits(0)], [5], {})
    with pytest.raises(ValueError, match="one condition per code grid"):
        condition_gap(model, [_bits(0)], [0, 1], {})
    with pytest.raises(TypeError, match="class label \\(int\\) or a prompt"):
        condition_gap(model, [_bits(0)], [1.5], {})
    with pytest.raises(ValueError, match="exceeds this model's max_latent_grid"):
        shapes_condition_gap(model, num_images=2, size=64)  # GRN-tiny holds 4x4 latents, 64 px needs 8x8
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        shapes_condition_gap(model, num_images=0)


def test_shapes_sections_on_a_tiny_model():
    model = build_tiny_grn(num_class_tokens=len(CLASS_NAMES))
    report = shapes_condition_gap(model, num_images=3, size=32, batch_size=2)
    for section in ("t2i", "c2i"):
        assert report[section]["n"] == 3 and set(report[section]["gaps"]) == set(SHAPES_SWAPS)
        for attribute in SHAPES_SWAPS:
            assert 0.0 < report[section]["slots_changed"][attribute] < 1.0  # the swap changes the render
    few = build_tiny_grn(num_class_tokens=4)
    assert shapes_condition_gap(few, num_images=2, size=32)["c2i"] is None


def test_shapes_condition_gap_on_cell_aligned_scenes(monkeypatch):
    import unified_grn.eval.conditioning as conditioning

    seen = []
    original = conditioning.make_shapes_example

    def spy(*args, **kwargs):
        seen.append(Scene.from_dict((example := original(*args, **kwargs))["scene"]))
        return example

    monkeypatch.setattr(conditioning, "make_shapes_example", spy)
    model = build_tiny_grn(num_class_tokens=len(CLASS_NAMES))
    aligned = shapes_condition_gap(model, num_images=3, size=32, batch_size=3, cell=4)
    assert seen and all(o.cx % 4 == 2 and o.cy % 4 == 2 for sc in seen for o in sc.objects)
    seen.clear()
    free = shapes_condition_gap(model, num_images=3, size=32, batch_size=3)
    assert any(o.cx % 4 != 2 for sc in seen for o in sc.objects)  # the default scenes are not on the grid
    assert aligned["t2i"]["true"] != free["t2i"]["true"]  # other images, other loss
    with pytest.raises(ValueError, match="divides the image size 32"):
        shapes_condition_gap(model, num_images=1, size=32, cell=5)


def test_evaluate_model_script_condition_gap_only(tmp_path):
    build_tiny_grn(num_class_tokens=len(CLASS_NAMES)).save_pretrained(tmp_path / "model")
    out = tmp_path / "gap.json"
    off = ["--num-t2i", "0", "--num-t2v", "0", "--c2i-per-class", "0", "--num-chat", "0"]
    args = ["--model", str(tmp_path / "model"), "--condition-gap-images", "2", "--size", "32", *off]
    args += ["--condition-gap-kept-fraction", "0.25", "--condition-gap-cell", "4"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate_model.py"), *args, "--out", str(out)],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["t2i"] is None and report["condition_gap"]["c2i"]["n"] == 2
    assert report["condition_gap"]["c2i"]["kept_fraction"] == 0.25
    assert set(report["condition_gap"]["t2i"]["slots_changed"]) == set(SHAPES_SWAPS)
