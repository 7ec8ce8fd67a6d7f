"""The held-out evaluation suite: prompts from the test splits, every section, and a JSON report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.data.moving_shapes import make_moving_shapes_example, parse_video_caption
from unified_grn.data.shapes import make_shapes_example
from unified_grn.data.shapes_captions import parse_caption
from unified_grn.eval.suite import (
    SuiteConfig,
    balanced_t2i_prompts,
    chat_turn_cases,
    evaluate_model,
    heldout_prompts,
)
from unified_grn.eval.t2i import TASKS, task_of


def test_heldout_prompts_are_distinct_test_captions_not_training_ones():
    prompts = heldout_prompts("shapes", 20)
    assert len(set(prompts)) == 20 and prompts == heldout_prompts("shapes", 20)
    assert prompts[0] == make_shapes_example(0, 0, split="test")["text"]
    assert prompts != [make_shapes_example(0, i, split="train")["text"] for i in range(20)]
    videos = heldout_prompts("moving-shapes", 5)
    assert len(set(videos)) == 5 and all(parse_video_caption(p) for p in videos)  # valid video captions


def test_balanced_t2i_prompts_give_each_task_as_many_test_captions():
    prompts = balanced_t2i_prompts(20, size=32)
    tasks = [task_of(parse_caption(p)) for p in prompts]
    assert tasks == [t for t in TASKS for _ in range(20)]  # task by task, 20 each
    test = {make_shapes_example(0, i, size=32, split="test")["text"] for i in range(3000)}
    assert set(prompts) <= test
    singles = prompts[:20]  # one caption per class at most: 18, then the cycle starts again
    assert len(set(singles)) == 18 and singles[18:] == singles[:2]
    assert all(len(set(prompts[k : k + 20])) == 20 for k in (20, 40, 60))  # enough distinct ones
    assert balanced_t2i_prompts(3, size=32) == [p for k in range(0, 80, 20) for p in prompts[k : k + 3]]


def test_t2i_per_task_replaces_num_t2i_and_seeds_each_repeat_apart():
    calls = []

    class Recorder:
        config = None

        def generate(self, prompts, seed, **kwargs):
            calls.append((list(prompts), list(seed)))
            return type("Out", (), {"images": [np.zeros((32, 32, 3), np.uint8) for _ in prompts]})()

    cfg = SuiteConfig(
        num_t2i=5, t2i_per_task=2, num_t2v=0, c2i_per_class=0, num_chat=0, batch_size=3, size=32, seed=4
    )
    report = evaluate_model(Recorder(), cfg)
    assert [p for c in calls for p in c[0]] == balanced_t2i_prompts(2, size=32)
    assert [s for c in calls for s in c[1]] == list(range(4, 12))
    assert report["t2i"]["n"] == 8 and report["t2i"]["task_counts"] == dict.fromkeys(TASKS, 2)


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
