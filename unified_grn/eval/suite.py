"""The held-out evaluation of a model on the shapes worlds: every checker of this package at once.

Prompts come from the ``test`` split of each procedural world (``shapes``, ``moving-shapes``,
``shapes-chat``; item ``i`` is a pure function of ``(seed, "test", i)``), which no training run
reads: text-to-image (GenEval-style ``overall``, per task), text-to-video (direction, persistence),
image-to-video (the same captions with each test clip's true first frame given, scored by the same
checker: how much of text-to-video's failure is the later frames alone), class-to-image (every
class of ``shapes.CLASS_NAMES``), and chat (each assistant turn of a test conversation, answered by
``model.chat`` with the true history before it, scored by ``chat.score_turn``). ``evaluate_model``
returns one JSON-ready dict; the numbers in ``checkpoints/grn-shapes/MODEL_CARD.md`` are made by
``scripts/evaluate_model.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unified_grn.data.moving_shapes import make_moving_shapes_example
from unified_grn.data.shapes import CLASS_NAMES, make_shapes_example, sample_scene, split_rng
from unified_grn.data.shapes_chat import make_shapes_chat_example
from unified_grn.eval.c2i import evaluate_c2i
from unified_grn.eval.ceiling import tokenizer_ceiling
from unified_grn.eval.chat import evaluate_chat
from unified_grn.eval.conditioning import shapes_condition_gap
from unified_grn.eval.t2i import TASKS, evaluate_t2i, task_of
from unified_grn.eval.t2v import evaluate_t2v

__all__ = ["SuiteConfig", "balanced_t2i_prompts", "chat_turn_cases", "evaluate_model", "heldout_prompts"]

logger = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    """How much to evaluate and with which sampling settings (None: the model's generation config).

    Attributes:
        num_t2i: text-to-image prompts (the first distinct test captions; the tasks come in the
            world's proportions, so 300 of them hold only 17 single-object prompts).
        t2i_per_task: when > 0, replaces ``num_t2i``: this many prompts of each GenEval task
            (:func:`balanced_t2i_prompts`; a task with fewer distinct test captions repeats them,
            each repeat with its own sampling seed), so each task's accuracy, a quarter of
            ``overall``, rests on as many images.
        num_t2v: text-to-video prompts.
        num_i2v: image-to-video clips (the first ``num_i2v`` text-to-video test clips, their true
            first frame given; 0 skips it).
        c2i_per_class: samples per class for class-to-image (0 skips it).
        num_chat: test conversations whose assistant turns are answered (0 skips chat).
        data_seed: seed of the procedural test splits (the datasets' ``--seed``).
        seed: sampling seed; sample ``i`` of a section uses ``seed + i``.
        batch_size: prompts per ``generate`` call.
        num_steps / guidance_scale / temperature / schedule: sampler settings passed to
            ``generate`` (and to ``chat``, the temperature as ``image_temperature``).
        size: image side in pixels (the worlds' 64).
        ceiling_images / ceiling_videos: test renders for the tokenizer's ceiling section
            (``eval.ceiling.tokenizer_ceiling`` on ``model.visual_tokenizer``; 0 skips it).
        ceiling_exact_rounds: with the ceiling, keep only this many coarse HBQ rounds of the true
            codes and draw the rest at random (None: the true codes as they are).
        condition_gap_images: test scenes for the teacher-forced condition gap (how much the loss
            rises when the prompt's / class's shape or colour is swapped,
            ``eval.conditioning.shapes_condition_gap``; 0 skips it).
        condition_gap_kept_fraction: measure the gap at this one noise level (kept fraction
            ``p_t``; 0.0 = the condition alone) instead of over the training distribution.
        condition_gap_cell: draw the condition gap's test scenes with objects centred on this
            grid (``grn make-data --cell``), for a model trained on such images (None: as they are).
    """

    num_t2i: int = 100
    t2i_per_task: int = 0
    num_t2v: int = 24
    num_i2v: int = 0
    c2i_per_class: int = 3
    num_chat: int = 40
    data_seed: int = 0
    seed: int = 0
    batch_size: int = 8
    num_steps: int | None = None
    guidance_scale: float | None = None
    temperature: float | None = None
    schedule: str | None = None
    size: int = 64
    ceiling_images: int = 0
    ceiling_videos: int = 0
    ceiling_exact_rounds: int | None = None
    condition_gap_images: int = 0
    condition_gap_kept_fraction: float | None = None
    condition_gap_cell: int | None = None


def heldout_prompts(world: str, n: int, seed: int = 0, size: int = 64) -> list[str]:
    """The first ``n`` distinct captions of the ``test`` split of ``world`` (``shapes`` / ``moving-shapes``)."""
    return [example["text"] for example in _heldout_examples(world, n, seed, size)]


def balanced_t2i_prompts(per_task: int, seed: int = 0, size: int = 64) -> list[str]:
    """``per_task`` test-split shapes captions of each GenEval task (``eval.t2i.TASKS``), task by task.

    Each task takes its distinct captions in test-split order; a task with fewer than ``per_task``
    of them (single objects: at most 18, one per class) cycles through them again.
    """
    distinct = {task: {} for task in TASKS}
    for i in range(200 * per_task + 1000):
        if all(len(found) >= per_task for found in distinct.values()):
            break
        scene = sample_scene(split_rng(seed, i, "test"), size)  # make_shapes_example's scene, unrendered
        distinct[task_of(scene.spec)].setdefault(scene.caption, None)
    prompts = []
    for task, found in distinct.items():
        if not found:
            raise ValueError(f"no {task} caption in the first {i + 1} test scenes (seed {seed})")
        captions = list(found)[:per_task]
        prompts += [captions[k % len(captions)] for k in range(per_task)]
    return prompts


def _heldout_examples(world: str, n: int, seed: int, size: int) -> list[dict[str, Any]]:
    """The test examples behind :func:`heldout_prompts` (the first with each distinct caption)."""
    make = {
        "shapes": lambda i: make_shapes_example(seed, i, size=size, split="test"),
        "moving-shapes": lambda i: make_moving_shapes_example(seed, i, size=size, num_frames=5, split="test"),
    }[world]
    examples: dict[str, dict[str, Any]] = {}
    i = 0
    while len(examples) < n and i < 50 * n + 100:
        example = make(i)
        examples.setdefault(example["text"], example)
        i += 1
    return list(examples.values())


def chat_turn_cases(n: int, seed: int = 0, size: int = 64) -> list[tuple[list[dict], dict]]:
    """``(history, turn)`` per assistant turn of ``n`` test conversations: the messages before the
    turn's reply (images as PIL) and the turn's record (``kind``, ``answer``, ``caption``)."""
    cases = []
    for i in range(n):
        example = make_shapes_chat_example(seed, i, size=size, split="test")
        pixels = {entry["file_name"]: entry["image"] for entry in example["images"]}
        messages = [
            {
                "role": m["role"],
                "content": [
                    {"type": "image", "image": pixels[item["image"]]} if item["type"] == "image" else item
                    for item in m["content"]
                ],
            }
            for m in example["messages"]
        ]
        for turn in example["turns"]:
            cases.append((messages[: turn["message"]], turn))
    return cases


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _sampling(cfg: SuiteConfig, chat: bool = False) -> dict[str, Any]:
    kwargs = {"num_steps": cfg.num_steps, "guidance_scale": cfg.guidance_scale, "schedule": cfg.schedule}
    kwargs["image_temperature" if chat else "temperature"] = cfg.temperature
    return {k: v for k, v in kwargs.items() if v is not None}


def _images(model, prompts: list, cfg: SuiteConfig) -> list:
    out = []
    for start, chunk in _batches(prompts, cfg.batch_size):
        seeds = [cfg.seed + start + j for j in range(len(chunk))]
        result = model.generate(
            chunk, height=cfg.size, width=cfg.size, seed=seeds, progress_bar=False, **_sampling(cfg)
        )
        out.extend(result.images)
    return out


def _videos(
    model, prompts: list[str], cfg: SuiteConfig, first_frames: list | None = None
) -> list[np.ndarray]:
    """Text-to-video clips, or image-to-video ones when each prompt has a first frame."""
    out = []
    for start, chunk in _batches(prompts, cfg.batch_size):
        seeds = [cfg.seed + start + j for j in range(len(chunk))]
        images = {} if first_frames is None else {"image": first_frames[start : start + len(chunk)]}
        result = model.generate(
            chunk, modality="video", height=cfg.size, width=cfg.size, seed=seeds, output_type="np",
            progress_bar=False, **images, **_sampling(cfg),
        )  # fmt: skip
        out.extend(list(result.videos))
    return out


def _i2v(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if cfg.num_i2v <= 0:
        return None
    examples = _heldout_examples("moving-shapes", cfg.num_i2v, cfg.data_seed, cfg.size)
    prompts = [example["text"] for example in examples]
    videos = _videos(model, prompts, cfg, first_frames=[example["video"][0] for example in examples])
    return evaluate_t2v(zip(videos, prompts)).to_dict()


def _chat(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if not hasattr(model, "chat"):
        logger.warning("this model has no chat(); the chat section is skipped")
        return None
    pairs = []
    for i, (history, turn) in enumerate(chat_turn_cases(cfg.num_chat, cfg.data_seed, cfg.size)):
        # greedy answers: the score measures what the model knows, not the text sampler's luck
        reply = model.chat(history, seed=cfg.seed + i, do_sample=False, **_sampling(cfg, chat=True))
        images = [item for item in reply["content"] if not isinstance(item, str)]
        text = " ".join(item for item in reply["content"] if isinstance(item, str))
        pairs.append((images[0] if turn["answer_type"] == "image" and images else text, turn))
    return evaluate_chat(pairs).to_dict()


def evaluate_model(model, cfg: SuiteConfig | None = None) -> dict[str, Any]:
    """Every checker on the held-out prompts (module docstring); wall time per section included."""
    cfg = cfg or SuiteConfig()
    report: dict[str, Any] = {"settings": asdict(cfg), "wall_s": {}}
    sections = {
        "t2i": lambda: _t2i(model, cfg),
        "t2v": lambda: _t2v(model, cfg),
        "i2v": lambda: _i2v(model, cfg),
        "c2i": lambda: _c2i(model, cfg),
        "chat": lambda: _chat(model, cfg) if cfg.num_chat > 0 else None,
        "ceiling": lambda: _ceiling(model, cfg),
        "condition_gap": lambda: _condition_gap(model, cfg),
    }
    for name, run in sections.items():
        start = time.perf_counter()
        report[name] = run()
        report["wall_s"][name] = round(time.perf_counter() - start, 1)
        logger.info("%s: %s (%.0f s)", name, report[name], report["wall_s"][name])
    return report


def _t2i(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if cfg.num_t2i <= 0 and cfg.t2i_per_task <= 0:
        return None
    if cfg.t2i_per_task > 0:
        prompts = balanced_t2i_prompts(cfg.t2i_per_task, cfg.data_seed, cfg.size)
    else:
        prompts = heldout_prompts("shapes", cfg.num_t2i, cfg.data_seed, cfg.size)
    return evaluate_t2i(zip(_images(model, prompts, cfg), prompts)).to_dict()


def _t2v(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if cfg.num_t2v <= 0:
        return None
    prompts = heldout_prompts("moving-shapes", cfg.num_t2v, cfg.data_seed, cfg.size)
    return evaluate_t2v(zip(_videos(model, prompts, cfg), prompts)).to_dict()


def _c2i(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    classes = min(len(CLASS_NAMES), getattr(model.config, "num_class_tokens", 0))
    if cfg.c2i_per_class <= 0 or classes == 0:
        return None
    labels = [k for k in range(classes) for _ in range(cfg.c2i_per_class)]
    return evaluate_c2i(zip(_images(model, labels, cfg), labels)).to_dict()


def _ceiling(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if cfg.ceiling_images <= 0 and cfg.ceiling_videos <= 0:
        return None
    return tokenizer_ceiling(
        model.visual_tokenizer, cfg.ceiling_images, cfg.ceiling_videos, cfg.data_seed, cfg.size,
        exact_rounds=cfg.ceiling_exact_rounds, seed=cfg.seed,
    )  # fmt: skip


def _condition_gap(model, cfg: SuiteConfig) -> dict[str, Any] | None:
    if cfg.condition_gap_images <= 0:
        return None
    return shapes_condition_gap(
        model, cfg.condition_gap_images, cfg.data_seed, cfg.seed, cfg.size,
        kept_fraction=cfg.condition_gap_kept_fraction, cell=cfg.condition_gap_cell,
    )  # fmt: skip
