"""The held-out evaluation suite: prompts from the test splits, every section, and a JSON report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.data.moving_shapes import make_moving_shapes_example, parse_video_caption
from unified_grn.data.shapes import make_shapes_example
from unified_grn.eval.suite import SuiteConfig, chat_turn_cases, evaluate_model, heldout_prompts


def test_heldout_prompts_are_distinct_test_captions_not_training_ones():
    prompts = heldout_prompts("shapes", 20)
    assert len(set(prompts)) == 20 and prompts == heldout_prompts("shapes", 20)
    assert prompts[0] == make_shapes_example(0, 0, split="test")["text"]
    assert prompts != [make_shapes_example(0, i, split="train")["text"] for i in range(20)]
    videos = heldout_prompts("moving-shapes", 5)
    assert len(set(videos)) == 5 and all(parse_video_caption(p) for p in videos)  # valid video captions


def test_i2v_is_given_each_t2v_test_clips_first_frame(monkeypatch):
    """The I2V section asks for the T2V section's captions, each with its own clip's true first frame."""
    calls = []

    class Recorder:
        config = None

        def generate(self, prompts, image, seed, **kwargs):
            calls.append((prompts, image, seed, kwargs["modality"]))
            clips = [np.zeros((5, 32, 32, 3), np.uint8) for _ in prompts]
            return type("Out", (), {"videos": clips})()

    cfg = SuiteConfig(
        num_t2i=0, num_t2v=0, num_i2v=5, c2i_per_class=0, num_chat=0, batch_size=2, size=32, seed=7
    )
    report = evaluate_model(Recorder(), cfg)
    prompts = [p for c in calls for p in c[0]]
    assert prompts == heldout_prompts("moving-shapes", 5, size=32) and [len(c[0]) for c in calls] == [2, 2, 1]
    assert [s for c in calls for s in c[2]] == list(range(7, 12)) and {c[3] for c in calls} == {"video"}
    for prompt, frame in zip(prompts, [f for c in calls for f in c[1]]):
        first = make_moving_shapes_example(0, _test_index(prompt), size=32, num_frames=5, split="test")[
            "video"
        ][0]
        assert np.array_equal(frame, first)
    assert report["i2v"]["n"] == 5 and report["i2v"]["overall"] == 0.0  # blank clips: nothing moves


def _test_index(caption: str) -> int:
    i = 0
    while make_moving_shapes_example(0, i, size=32, num_frames=5, split="test")["text"] != caption:
        i += 1
    return i


def test_chat_cases_hold_the_history_before_each_assistant_turn():
    cases = chat_turn_cases(3)
    assert cases and all(history[-1]["role"] == "user" for history, _ in cases)
    for history, turn in cases:
        assert len(history) == turn["message"]
        images = [i["image"] for m in history for i in m["content"] if i["type"] == "image"]
        assert all(hasattr(image, "size") for image in images)  # PIL, not file names


@pytest.fixture(scope="module")
def tiny():
    return GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny", num_class_tokens=3)).eval()


def test_evaluate_model_runs_every_section_and_is_json(tiny):
    cfg = SuiteConfig(
        num_t2i=3,
        num_t2v=2,
        num_i2v=2,
        c2i_per_class=1,
        num_chat=0,
        num_steps=2,
        batch_size=2,
        size=32,
        ceiling_images=2,
        condition_gap_images=2,
    )
    report = evaluate_model(tiny, cfg)
    assert json.loads(json.dumps(report)) == report
    assert report["t2i"]["n"] == 3 and report["t2v"]["n"] == 2 and report["c2i"]["n"] == 3
    assert report["i2v"]["n"] == 2 and "direction_any_shape" in report["i2v"]
    assert report["chat"] is None and set(report["wall_s"]) == {
        "t2i",
        "t2v",
        "i2v",
        "c2i",
        "chat",
        "ceiling",
        "condition_gap",
    }
    assert report["ceiling"]["t2i"]["reconstructed"]["n"] == 2 and report["ceiling"]["t2v"] is None
    gap = report["condition_gap"]  # 3 class tokens < the world's 18 classes: no c2i section
    assert gap["c2i"] is None and gap["t2i"]["n"] == 2 and set(gap["t2i"]["gaps"]) == {"shape", "colour"}
    assert 0.0 <= report["t2i"]["overall"] <= 1.0
