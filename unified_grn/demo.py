"""``grn demo``: the first README command -- every ability of a GRN model, scored, on one web page.

``run_demo(model_dir, out_dir, seed=0, num_steps=None, quick=False)`` loads a model folder with
``AutoModelForGRN.from_pretrained`` (default ``checkpoints/grn-shapes``, the shipped model) and
runs five sections, each timed, logged and scored by the programmatic checkers of
``unified_grn.eval``:

1. ``t2i``: images for captions of the ``shapes`` grammar (single object, colour, counts up to
   three, an absolute position, a relation), scored by the GenEval-style checker (``eval.t2i``);
2. ``c2i``: one image per class token (the ``shapes.CLASS_NAMES`` the model has tokens for) and a
   grid of them (columns: colours, rows: shapes), scored by ``eval.c2i``;
3. ``t2v``: a ``moving-shapes`` caption as a video (mp4 and gif), scored by ``eval.t2v``;
4. ``i2v``: a video from a rendered first frame and its motion caption, scored the same way;
5. ``chat``: a short conversation through ``model.chat`` (draw, then a question about the drawing,
   then a question about an attached picture), scored by ``eval.chat`` where an answer is known.
   A model without ``chat`` skips the section with a warning.

It writes, under ``out_dir``: ``t2i/*.png``, ``c2i/*.png`` (+ ``c2i/grid.png``),
``video/{t2v,i2v}.{mp4,gif}`` (+ ``video/i2v_input.png``), ``chat/*.png``, ``demo.json`` (every
number: scores, prompts, model, settings, wall time per section) and ``index.html``, one
self-contained page showing it all (``unified_grn.demo_html``). Every sample is seeded: the same
``seed`` gives the same files. A section that fails is logged with its traceback, marked
``"status": "error"`` and the others still run; ``run_demo`` returns the summary either way.

``quick=True`` (tests) uses ``QUICK_STEPS`` refinement steps unless ``num_steps`` is given, three
captions and at most ``QUICK_CLASSES`` classes.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from unified_grn.data.moving_shapes import MovingObject, MovingScene, moving_scene_errors, render_video
from unified_grn.data.shapes import CLASS_NAMES, SHAPES, ShapeObject
from unified_grn.data.shapes_chat import NUMBER_WORDS
from unified_grn.data.shapes_render import render_objects
from unified_grn.demo_html import write_index
from unified_grn.eval.c2i import evaluate_c2i
from unified_grn.eval.chat import evaluate_chat, score_turn
from unified_grn.eval.detect import detect_objects
from unified_grn.eval.t2i import evaluate_t2i
from unified_grn.eval.t2v import T2VResult, score_t2v
from unified_grn.processing_grn import save_video

__all__ = [
    "DEFAULT_MODEL_DIR",
    "QUICK_CLASSES",
    "QUICK_STEPS",
    "T2I_PROMPTS",
    "ModelFolderMissing",
    "run_demo",
    "write_mp4",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path("checkpoints/grn-shapes")
#: Captions of the ``shapes`` grammar: single object, colour, counts 2 and 3, position, relation.
T2I_PROMPTS = (
    "a red circle",
    "an orange triangle",
    "two blue squares",
    "three green triangles",
    "a yellow circle on the left",
    "a red circle above a blue square",
)
QUICK_T2I_PROMPTS = ("a red circle", "two blue squares", "a red circle above a blue square")
T2V_PROMPT = "a green triangle moving right"
#: The image-to-video clip in 64-px coordinates: its first frame is the input, its caption the prompt.
I2V_OBJECTS = (MovingObject("blue", "square", 14.0, "up", (32.0, 46.0), (32.0, 18.0)),)
BACKGROUND = (236, 232, 228)
CHAT_DRAW = ("draw a red circle above a blue square", "a red circle above a blue square")
CHAT_COUNT_QUESTION = "how many circles are there?"
#: The attached picture of the last chat exchange (64-px coordinates) and its question / answer.
CHAT_PICTURE = (
    ShapeObject("yellow", "triangle", 16.0, 32.0, 16.0),
    ShapeObject("green", "square", 46.0, 30.0, 14.0),
)
CHAT_PICTURE_QA = ("what colour is the square?", "color", "green")
QUICK_STEPS = 4
QUICK_CLASSES = 6
CHAT_MAX_NEW_TOKENS = 16
SECTIONS = ("t2i", "c2i", "t2v", "i2v", "chat")
TITLES = {
    "t2i": "text-to-image",
    "c2i": "class-to-image",
    "t2v": "text-to-video",
    "i2v": "image-to-video",
    "chat": "chat",
}


class ModelFolderMissing(FileNotFoundError):
    """The model folder does not exist or holds no ``config.json``; the message says how to get one."""


def _missing_message(path: Path) -> str:
    return (
        f"no GRN model at {str(path)!r} (no config.json there). The shipped model is part of the "
        f"repository, under {DEFAULT_MODEL_DIR}: run grn demo from the repository root or pass "
        f"--model DIR. To train it yourself, run the recorded commands of "
        f"{DEFAULT_MODEL_DIR}/MODEL_CARD.md (summarised at the top of configs/train/shapes.yaml)."
    )


# ----------------------------------------------------------------------------- small helpers


def _num(value: Any, digits: int = 3) -> float | None:
    """A JSON-safe rounded float (None for NaN / inf)."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _scaled(objects, size: int) -> list[ShapeObject]:
    k = size / 64
    return [ShapeObject(o.color, o.shape, o.cx * k, o.cy * k, o.size * k) for o in objects]


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as an mp4 a browser plays (H.264 yuv420p where PyAV has it).

    ``moving_shapes.write_video`` is lossless (a profile browsers refuse) and
    ``processing_grn.save_video`` writes MPEG-4 Part 2 (which they do not play either); this one
    falls back to the latter only without libx264 or for odd frame sizes.
    """
    frames, path = np.asarray(frames), Path(path)
    height, width = frames.shape[1:3]
    if "libx264" not in av.codecs_available or height % 2 or width % 2:
        return save_video(frames, path, fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _class_grid(images: list[Image.Image], labels: list[int], pad: int = 2) -> Image.Image:
    """Class images on a grid: column = colour, row = shape (``CLASS_NAMES`` is colour-major)."""
    width, height = images[0].size
    cols = max(label // len(SHAPES) for label in labels) + 1
    grid = Image.new("RGB", (cols * (width + pad) + pad, len(SHAPES) * (height + pad) + pad), "white")
    for image, label in zip(images, labels):
        col, row = divmod(label, len(SHAPES))
        grid.paste(image, (pad + col * (width + pad), pad + row * (height + pad)))
    return grid


def _video_result(result: T2VResult) -> dict:
    motions = [
        {
            "motion": f"{m.motion.color} {m.motion.shape} moving {m.motion.direction}",
            "correct": m.correct,
            "direction": m.direction,
            "persistence": m.persistence,
            "smoothness": m.smoothness,
            "direction_any_shape": m.direction_any_shape,
            "tracked_fraction": _num(m.tracked_fraction),
            "travel_px": _num(m.travel),
            "drift_px": _num(m.drift),
        }
        for m in result.motions
    ]
    return {"correct": result.correct, "no_extra": result.no_extra, "motions": motions}


def _accepted(fn: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The items of ``kwargs`` that ``fn`` accepts (all of them when it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


# ----------------------------------------------------------------------------- the demo


class _Demo:
    """Runs the sections on a loaded model and collects their results (see the module docstring)."""

    def __init__(self, model, out_dir: Path, seed: int, num_steps: int | None, quick: bool) -> None:
        self.model, self.out, self.seed, self.quick = model, out_dir, seed, quick
        self.num_steps = num_steps if num_steps is not None else (QUICK_STEPS if quick else None)
        gen = model.generation_config
        self.height, self.width = int(gen.height), int(gen.width)
        self.steps_shown = self.num_steps if self.num_steps is not None else gen.num_steps
        self.gen_kwargs = dict(seed=seed, num_steps=self.num_steps, progress_bar=False)

    def path(self, relative: str) -> Path:
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save_video(self, frames: np.ndarray, stem: str) -> dict:
        fps = int(getattr(self.model.processor, "fps", 8) or 8)
        write_mp4(frames, self.path(f"video/{stem}.mp4"), fps)
        save_video(frames, self.path(f"video/{stem}.gif"), fps)
        return {"mp4": f"video/{stem}.mp4", "gif": f"video/{stem}.gif", "num_frames": len(frames)}

    # -------------------------------------------------------------- sections
    def t2i(self) -> dict:
        prompts = list(QUICK_T2I_PROMPTS if self.quick else T2I_PROMPTS)
        logger.info("  %d captions, %d steps", len(prompts), self.steps_shown)
        out = self.model.generate(prompts, modality="image", **self.gen_kwargs)
        report = evaluate_t2i(zip(out.images, prompts))
        items = []
        for i, (image, prompt, result) in enumerate(zip(out.images, prompts, report.results)):
            file = f"t2i/{i:02d}_{_slug(prompt)}.png"
            image.save(self.path(file))
            detected = [f"{d.color} {d.shape or 'blob'}" for d in result.detections]
            items.append(
                {"prompt": prompt, "seed": self.seed + i, "file": file, "task": result.task}
                | {"correct": result.correct, "checks": result.checks, "detected": detected}
            )
        summary = f"{sum(r.correct for r in report.results)}/{len(prompts)} captions correct"
        return {"items": items, "report": report.to_dict(), "summary": summary}

    def c2i(self) -> dict:
        num_classes = min(int(self.model.config.num_class_tokens), len(CLASS_NAMES))
        if num_classes == 0:
            return {"status": "skipped", "note": "the model has no class tokens (num_class_tokens = 0)"}
        labels = list(range(min(num_classes, QUICK_CLASSES) if self.quick else num_classes))
        logger.info("  %d classes, %d steps", len(labels), self.steps_shown)
        out = self.model.generate(class_label=labels, modality="image", **self.gen_kwargs)
        report = evaluate_c2i(zip(out.images, labels))
        items = []
        for image, label, result in zip(out.images, labels, report.results):
            file = f"c2i/{label:02d}_{_slug(CLASS_NAMES[label])}.png"
            image.save(self.path(file))
            items.append(dict(label=label, class_name=CLASS_NAMES[label], file=file, correct=result.correct))
        grid = _class_grid(list(out.images), labels)
        grid.save(self.path("c2i/grid.png"))
        summary = f"{sum(r.correct for r in report.results)}/{len(labels)} classes correct"
        return {"grid": "c2i/grid.png", "grid_size": list(grid.size), "items": items} | {
            "report": report.to_dict(),
            "summary": summary,
        }

    def _video_ok(self) -> dict | None:
        if int(self.model.config.max_latent_grid[0]) < 2:
            return {"status": "skipped", "note": "the model's latent grid has one frame: no video"}
        return None

    def t2v(self) -> dict:
        if (skip := self._video_ok()) is not None:
            return skip
        logger.info("  %r, %d steps", T2V_PROMPT, self.steps_shown)
        frames = self.model.generate(T2V_PROMPT, modality="video", **self.gen_kwargs).videos[0].numpy()
        result = score_t2v(frames, T2V_PROMPT)
        files = self.save_video(frames, "t2v")
        summary = "motion correct" if result.correct else "motion wrong"
        return {
            "prompt": T2V_PROMPT,
            "seed": self.seed,
            **files,
            "score": _video_result(result),
            "summary": summary,
        }

    def i2v(self) -> dict:
        if (skip := self._video_ok()) is not None:
            return skip
        clip = MovingScene(list(I2V_OBJECTS), BACKGROUND, 64, 9)
        assert not moving_scene_errors(clip), moving_scene_errors(clip)
        first = Image.fromarray(render_video(clip, size=self.height)[0])
        first.save(self.path("video/i2v_input.png"))
        logger.info("  %r from a rendered first frame, %d steps", clip.caption, self.steps_shown)
        out = self.model.generate(clip.caption, modality="video", image=first, **self.gen_kwargs)
        frames = out.videos[0].numpy()
        result = score_t2v(frames, clip.caption)
        files = self.save_video(frames, "i2v")
        summary = "motion correct" if result.correct else "motion wrong"
        return {
            "prompt": clip.caption,
            "seed": self.seed,
            "input": "video/i2v_input.png",
            **files,
            "score": _video_result(result),
            "summary": summary,
        }

    def chat(self) -> dict:
        chat = getattr(self.model, "chat", None)
        if not callable(chat):
            logger.warning("the model has no chat() (unified_grn.chat missing): skipping the chat section")
            return {"status": "skipped", "note": "model.chat is not available in this installation"}
        kwargs = dict(seed=self.seed, num_steps=self.num_steps, max_new_tokens=CHAT_MAX_NEW_TOKENS)
        kwargs = _accepted(chat, {k: v for k, v in kwargs.items() if v is not None})
        return _ChatScript(self, chat, kwargs).run()


class _ChatScript:
    """The chat section: three exchanges, the transcript with saved images, per-turn scores."""

    def __init__(self, demo: _Demo, chat: Callable, kwargs: dict[str, Any]) -> None:
        self.demo, self.chat, self.kwargs = demo, chat, kwargs
        self.messages: list[dict] = []
        self.transcript: list[dict] = []
        self.scored: list[tuple[str | Image.Image, dict]] = []

    def _item(self, part: str | Image.Image, stem: str) -> tuple[dict, dict]:
        """(message item for the model, transcript item for demo.json)."""
        if isinstance(part, Image.Image):
            file = f"chat/{stem}.png"
            part.save(self.demo.path(file))
            return {"type": "image", "image": part}, {"type": "image", "file": file}
        return {"type": "text", "text": str(part)}, {"type": "text", "text": str(part)}

    def exchange(self, parts: list[str | Image.Image], turn: dict) -> tuple[str, list[Image.Image]]:
        """Send one user message; score the reply against ``turn`` (an ``eval.chat`` turn) if possible."""
        n = len(self.messages) // 2 + 1
        user = [self._item(p, f"turn{n}_user_{j}") for j, p in enumerate(parts)]
        self.messages.append({"role": "user", "content": [m for m, _ in user]})
        self.transcript.append({"role": "user", "content": [t for _, t in user]})
        reply = self.chat(self.messages, **self.kwargs)
        content = [p for p in reply.get("content") or [] if isinstance(p, (str, Image.Image))]
        items = [self._item(p, f"turn{n}_assistant_{j}") for j, p in enumerate(content)]
        self.messages.append({"role": "assistant", "content": [m for m, _ in items]})
        text = " ".join(p.strip() for p in content if isinstance(p, str)).strip()
        images = [p for p in content if isinstance(p, Image.Image)]
        correct = None  # no expected answer: not scored
        if turn["kind"] == "draw" or turn["answer"] is not None:
            prediction = images[0] if turn["kind"] == "draw" and images else text
            self.scored.append((prediction, turn))
            correct = score_turn(prediction, turn)
        entry = {"role": "assistant", "content": [t for _, t in items], "score": {**turn, "correct": correct}}
        self.transcript.append(entry)
        verdict = {None: "not scored", True: "correct", False: "wrong"}[correct]
        logger.info("  turn %d (%s): %s", n, turn["kind"], verdict)
        return text, images

    def run(self) -> dict:
        request, caption = CHAT_DRAW
        _, images = self.exchange([request], {"kind": "draw", "caption": caption, "answer": None})
        circles = sum(d.shape == "circle" for d in detect_objects(images[0])) if images else None
        expected = None if circles is None else NUMBER_WORDS[min(circles, len(NUMBER_WORDS) - 1)]
        self.exchange([CHAT_COUNT_QUESTION], {"kind": "count", "answer": expected, "caption": None})
        size = self.demo.height
        picture = render_objects(_scaled(CHAT_PICTURE, size), BACKGROUND, size)
        question, kind, answer = CHAT_PICTURE_QA
        self.exchange([picture, question], {"kind": kind, "answer": answer, "caption": None})
        report = evaluate_chat(self.scored).to_dict() if self.scored else None
        right = sum(t["score"]["correct"] is True for t in self.transcript if "score" in t)
        summary = f"{right}/{len(self.scored)} scored turns correct"
        return {"transcript": self.transcript, "report": report, "settings": self.kwargs, "summary": summary}


# ----------------------------------------------------------------------------- entry point


def _load_model(model_dir: Path, device: str | None):
    from unified_grn import AutoModelForGRN

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForGRN.from_pretrained(str(model_dir)).to(device).eval()
    return model, device


def _run_section(name: str, fn: Callable[[], dict], index: int) -> dict:
    logger.info("[%d/%d] %s", index, len(SECTIONS), TITLES[name])
    start = time.perf_counter()
    try:
        result = {"status": "ok", **fn()}
    except Exception as err:  # noqa: BLE001 - one failing section must not hide the others
        logger.exception("[%d/%d] %s failed", index, len(SECTIONS), TITLES[name])
        result = {"status": "error", "error": f"{type(err).__name__}: {err}"}
    result = {"title": TITLES[name], "wall_s": round(time.perf_counter() - start, 2), **result}
    logger.info(
        "[%d/%d] %s: %s in %.1f s",
        index, len(SECTIONS), TITLES[name], result.get("summary", result["status"]), result["wall_s"],
    )  # fmt: skip
    return result


def run_demo(
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    out_dir: str | Path = "outputs",
    seed: int = 0,
    num_steps: int | None = None,
    quick: bool = False,
    device: str | None = None,
) -> dict:
    """Run every section, write the files, ``demo.json`` and ``index.html``; return the summary.

    Raises ``ModelFolderMissing`` (a ``FileNotFoundError``) when ``model_dir`` holds no model, and
    ``OSError`` / ``ValueError`` when the model cannot be loaded or ``out_dir`` not be written.
    """
    start = time.perf_counter()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelFolderMissing(_missing_message(model_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    model, device = _load_model(model_dir, device)
    load_s = round(time.perf_counter() - start, 2)
    logger.info("loaded %s on %s in %.1f s", model_dir, device, load_s)
    demo = _Demo(model, out_dir, seed, num_steps, quick)
    sections = {name: _run_section(name, getattr(demo, name), i + 1) for i, name in enumerate(SECTIONS)}
    summary = {
        "model": {
            "name": model_dir.resolve().name,
            "path": str(model_dir),
            "parameters": sum(p.numel() for p in model.parameters()),
            "image_size": [demo.height, demo.width],
            "num_class_tokens": int(model.config.num_class_tokens),
        },
        "settings": {
            "seed": seed,
            "num_steps": demo.steps_shown,
            "quick": quick,
            "device": device,
            "torch_threads": torch.get_num_threads(),
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_s": load_s,
        "sections": sections,
    }
    summary["total_wall_s"] = round(time.perf_counter() - start, 2)
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_index(summary, out_dir / "index.html")
    logger.info("wrote %s and demo.json in %.1f s", out_dir / "index.html", summary["total_wall_s"])
    return summary
