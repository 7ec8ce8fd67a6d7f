"""``grn demo`` (unified_grn/demo.py, demo_html.py) end to end on a tiny random GRN model.

A random model draws noise, so these tests check the files, the page and the numbers behind it,
not the quality: every file exists and decodes, ``index.html`` links each of them and shows the
checker scores of ``demo.json``, a seed reproduces the images, the chat section is scored, and a
missing model or a failing section is reported.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.cli import main
from unified_grn.data.moving_shapes import MovingScene, moving_scene_errors, parse_video_caption
from unified_grn.data.shapes import CaptionSpec, Group, Scene, ShapeObject
from unified_grn.data.shapes_captions import parse_caption
from unified_grn.data.shapes_chat import scene_questions
from unified_grn.data.shapes_render import render_objects
from unified_grn.demo import (
    BACKGROUND,
    CHAT_COUNT_QUESTION,
    CHAT_DRAW,
    CHAT_PICTURE,
    CHAT_PICTURE_QA,
    I2V_OBJECTS,
    QUICK_CLASSES,
    QUICK_STEPS,
    QUICK_T2I_PROMPTS,
    T2I_PROMPTS,
    T2V_PROMPT,
)
from unified_grn.eval.t2i import task_of
from unified_grn.processing_grn import load_video

SECTIONS = ["t2i", "c2i", "t2v", "i2v", "chat"]
SIZE = 32  # GRN-tiny: hbq-tiny (stride 8) on a 4x4 latent grid
FRAMES = 9  # GRN-tiny: 3 latent frames


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo_model") / "grn-tiny"
    torch.manual_seed(0)
    GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny")).save_pretrained(path)
    return path


def _demo(model_dir: Path, out: Path, *extra: str) -> tuple[int, dict | None]:
    code = main(["demo", "--model", str(model_dir), "--out", str(out), "--quick", "--device", "cpu", *extra])
    summary = out / "demo.json"
    return code, json.loads(summary.read_text()) if summary.is_file() else None


@pytest.fixture(scope="module")
def quick_run(model_dir, tmp_path_factory) -> tuple[int, dict, Path]:
    out = tmp_path_factory.mktemp("demo_quick") / "outputs"
    code, summary = _demo(model_dir, out)
    return code, summary, out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.links |= {value for name, value in attrs if name in ("src", "href") and value}


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


# ----------------------------------------------------------------------------- the content


def test_prompts_are_valid_captions_that_cover_the_tasks():
    specs = [parse_caption(p) for p in T2I_PROMPTS]
    assert {task_of(s) for s in specs} == {"single_object", "counting", "position", "relation"}
    assert {g.count for s in specs for g in s.groups} == {1, 2, 3}
    assert len({g.color for s in specs for g in s.groups}) >= 4
    assert set(QUICK_T2I_PROMPTS) <= set(T2I_PROMPTS)
    assert parse_caption(CHAT_DRAW[1]).relation == "above" and CHAT_DRAW[0].endswith(CHAT_DRAW[1])
    assert len(parse_video_caption(T2V_PROMPT)) == 1
    clip = MovingScene(list(I2V_OBJECTS), BACKGROUND, 64, FRAMES)
    assert not moving_scene_errors(clip)
    # the attached chat picture really answers its question, by the shapes-chat world's rules
    spec = CaptionSpec((Group(1, "yellow", "triangle"), Group(1, "green", "square")), relation="left_of")
    scene = Scene("relation", spec, list(CHAT_PICTURE), BACKGROUND, 64, [0, 1])
    question, kind, answer = CHAT_PICTURE_QA
    assert (question, answer) in scene_questions(scene)[kind]


# ----------------------------------------------------------------------------- end to end


def test_quick_demo_writes_every_file(quick_run):
    code, summary, out = quick_run
    assert code == 0
    assert {"model", "settings", "sections", "load_s", "total_wall_s", "created"} <= summary.keys()
    assert summary["settings"] == dict(
        seed=0, num_steps=QUICK_STEPS, quick=True, device="cpu", torch_threads=1
    )
    assert summary["model"]["name"] == "grn-tiny" and summary["model"]["image_size"] == [SIZE, SIZE]
    sections = summary["sections"]
    assert list(sections) == SECTIONS
    assert all(s["status"] == "ok" and s["wall_s"] >= 0 for s in sections.values()), sections

    t2i, c2i = sections["t2i"], sections["c2i"]
    assert [it["prompt"] for it in t2i["items"]] == list(QUICK_T2I_PROMPTS)
    assert {"overall", "tasks", "checks", "prompt_accuracy"} <= t2i["report"].keys()
    assert [it["label"] for it in c2i["items"]] == list(range(QUICK_CLASSES))
    for item in [*t2i["items"], *c2i["items"]]:
        with Image.open(out / item["file"]) as image:
            assert image.format == "PNG" and image.size == (SIZE, SIZE)
            image.load()
    with Image.open(out / c2i["grid"]) as grid:  # 2 colours x 3 shapes, 2 px gaps
        assert grid.size == (2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)

    for name in ("t2v", "i2v"):
        video = sections[name]
        assert {"correct", "no_extra", "motions"} <= video["score"].keys()
        assert all({"direction", "direction_any_shape"} <= m.keys() for m in video["score"]["motions"])
        mp4, gif = load_video(out / video["mp4"]), load_video(out / video["gif"])
        assert mp4.shape == gif.shape == (FRAMES, SIZE, SIZE, 3) and video["num_frames"] == FRAMES
        assert np.abs(mp4.astype(int) - gif.astype(int)).mean() < 40  # the same clip, two codecs
    with Image.open(out / sections["i2v"]["input"]) as first:
        assert first.size == (SIZE, SIZE)


def test_index_links_every_file_and_shows_the_scores(quick_run):
    _, summary, out = quick_run
    html = (out / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(html)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"index.html"}
    assert parser.links - {link for link in parser.links if link.startswith("#")} == written
    assert "script" not in parser.tags and "http://" not in html and "https://" not in html
    assert "<style>" in html and {"img", "video", "table"} <= parser.tags

    sections = summary["sections"]
    assert summary["model"]["name"] in html and f"{summary['total_wall_s']:.1f} s" in html
    for s in sections.values():
        assert f"{s['wall_s']:.1f} s" in html and s["summary"] in html
    assert f"overall {_pct(sections['t2i']['report']['overall'])}" in html
    assert f"accuracy {_pct(sections['c2i']['report']['accuracy'])}" in html
    assert all(it["prompt"] in html for it in sections["t2i"]["items"])
    assert sections["t2v"]["prompt"] in html and sections["i2v"]["prompt"] in html
    assert CHAT_DRAW[0] in html and CHAT_COUNT_QUESTION in html


def test_same_seed_same_images(quick_run, model_dir, tmp_path):
    _, first, out = quick_run
    code, second = _demo(model_dir, tmp_path / "again")
    assert code == 0
    for name in ("t2i", "c2i"):
        for a, b in zip(first["sections"][name]["items"], second["sections"][name]["items"]):
            assert np.array_equal(
                np.asarray(Image.open(out / a["file"])),
                np.asarray(Image.open(tmp_path / "again" / b["file"])),
            )
        assert first["sections"][name]["report"] == second["sections"][name]["report"]


# ----------------------------------------------------------------------------- chat


def test_chat_section_scores_the_replies(model_dir, tmp_path, monkeypatch):
    calls = []

    def scripted_chat(self, messages, **kwargs):
        calls.append((list(messages), kwargs))
        text = messages[-1]["content"][-1]["text"]
        if text == CHAT_DRAW[0]:  # a correct drawing of the request
            k = self.generation_config.height / 64
            objects = [
                ShapeObject("red", "circle", 32 * k, 16 * k, 16 * k),
                ShapeObject("blue", "square", 32 * k, 46 * k, 16 * k),
            ]
            return {
                "role": "assistant",
                "content": [render_objects(objects, BACKGROUND, self.generation_config.height)],
            }
        answers = {CHAT_COUNT_QUESTION: "There is 1 circle.", CHAT_PICTURE_QA[0]: "It is blue."}
        return {"role": "assistant", "content": [answers[text]]}

    monkeypatch.setattr(GRNForConditionalGeneration, "chat", scripted_chat)
    code, summary = _demo(model_dir, tmp_path, "--num-steps", "2", "--seed", "5")
    assert code == 0 and summary["settings"]["num_steps"] == 2
    assert [kw for _, kw in calls] == [dict(seed=5, num_steps=2, max_new_tokens=16)] * 3
    messages = calls[-1][0]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert isinstance(messages[1]["content"][0]["image"], Image.Image)  # the drawing re-enters the context
    assert isinstance(messages[4]["content"][0]["image"], Image.Image)  # the attached picture comes first

    chat = summary["sections"]["chat"]
    scores = [m["score"] for m in chat["transcript"] if m["role"] == "assistant"]
    assert [(s["kind"], s["answer"], s["correct"]) for s in scores] == [
        ("draw", None, True),  # checked against the caption by the T2I checker
        ("count", "one", True),  # expected: the circles detected in the drawing
        ("color", "green", False),  # "blue" is wrong
    ]
    assert chat["report"]["accuracy"] == 0.5 and chat["report"]["image_accuracy"] == 1.0
    files = [c["file"] for m in chat["transcript"] for c in m["content"] if c["type"] == "image"]
    assert len(files) == 2 and all((tmp_path / f).is_file() for f in files)
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "expected: green" in html and "There is 1 circle." in html and "2/3 scored turns correct" in html


# ----------------------------------------------------------------------------- failures


def test_missing_model_exits_2_and_says_how_to_get_it(tmp_path, capsys):
    code = main(["demo", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("grn demo: error: no GRN model at")
    assert "checkpoints/grn-shapes" in err and "MODEL_CARD.md" in err and "--model" in err
    assert not (tmp_path / "out").exists()


def test_unwritable_out_exits_2(model_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["demo", "--model", str(model_dir), "--out", str(tmp_path / "file"), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("grn demo: error:") and "file" in err


def test_failing_section_is_reported_and_missing_chat_skipped(model_dir, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("checker exploded")

    monkeypatch.setattr("unified_grn.demo.score_t2v", broken)
    monkeypatch.setattr(GRNForConditionalGeneration, "chat", None)  # a model without chat()
    code, summary = _demo(model_dir, tmp_path)
    assert code == 1
    status = {name: s["status"] for name, s in summary["sections"].items()}
    assert status == dict(t2i="ok", c2i="ok", t2v="error", i2v="error", chat="skipped")
    assert summary["sections"]["t2v"]["error"] == "RuntimeError: checker exploded"
    assert "skipping the chat section" in caplog.text and "text-to-video failed" in caplog.text
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "failed: RuntimeError: checker exploded" in html and "skipped: model.chat" in html
