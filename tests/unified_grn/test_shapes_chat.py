"""The shapes-chat world: deterministic, well-formed conversations, valid edits, a loadable folder."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from unified_grn.cli import main
from unified_grn.data import shapes as sh
from unified_grn.data.shapes_chat import (
    IMAGE_KINDS,
    TURN_KINDS,
    edited_scene,
    load_shapes_chat,
    make_shapes_chat_example,
    open_image,
    reference,
    write_shapes_chat_dataset,
)

N_CONV = 200


@pytest.fixture(scope="module")
def conversations() -> list[dict]:
    return [make_shapes_chat_example(1, i) for i in range(N_CONV)]


def strip_pixels(ex: dict) -> dict:
    return {**ex, "images": [{k: v for k, v in im.items() if k != "image"} for im in ex["images"]]}


def test_deterministic_and_independent_of_dataset_size():
    a, b = make_shapes_chat_example(3, 5), make_shapes_chat_example(3, 5)
    assert strip_pixels(a) == strip_pixels(b)
    assert all(
        np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
        for x, y in zip(a["images"], b["images"])
    )
    assert strip_pixels(make_shapes_chat_example(4, 5)) != strip_pixels(a)
    assert strip_pixels(make_shapes_chat_example(3, 5, split="test")) != strip_pixels(a)


def test_conversation_structure(conversations):
    """Roles alternate; each turn describes its assistant message; references point backwards."""
    for conv in conversations:
        msgs, turns = conv["messages"], conv["turns"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        assert 2 <= len(turns) <= 4 and [t["message"] for t in turns] == list(range(1, len(msgs), 2))
        names = [im["file_name"] for im in conv["images"]]
        assert len(set(names)) == len(names) and all(
            re.fullmatch(rf"{conv['id']}_\d+\.png", n) for n in names
        )
        seen: list[str] = []  # images in the context so far, in order
        for turn in turns:
            user, reply = msgs[turn["message"] - 1], msgs[turn["message"]]
            seen += [c["image"] for c in user["content"] if c["type"] == "image"]
            assert user["content"][-1]["type"] == "text"
            assert turn["kind"] in TURN_KINDS
            if turn["kind"] == "draw":
                assert turn["image"] is None and turn["caption"] in user["content"][-1]["text"]
            else:
                assert turn["image"] == seen[-1]  # questions and edits are about the latest image
            if turn["answer_type"] == "image":
                assert turn["kind"] in IMAGE_KINDS and reply["content"] == [
                    {"type": "image", "image": turn["answer"]}
                ]
                seen.append(turn["answer"])  # a generated image re-enters the context as a user's does
            else:
                assert (
                    reply["content"] == [{"type": "text", "text": turn["answer"]}] and turn["caption"] is None
                )
        assert seen == names  # every image appears once, in order
        for im in conv["images"]:
            scene = sh.Scene.from_dict(im["scene"])
            assert sh.scene_errors(scene) == [] and scene.caption == im["caption"]
            assert np.array_equal(np.asarray(im["image"]), np.asarray(sh.render_scene(scene)))


def test_every_kind_appears_and_answers_are_balanced(conversations):
    turns = [t for c in conversations for t in c["turns"]]
    kinds = Counter(t["kind"] for t in turns)
    assert set(kinds) == set(TURN_KINDS), kinds
    exists = Counter(t["answer"] for t in turns if t["kind"] == "exists")
    assert min(exists.values()) >= 0.3 * sum(exists.values()), exists
    counts = Counter(t["answer"] for t in turns if t["kind"] == "count")
    assert {"zero", "one", "two"} <= set(counts), counts
    users = Counter(im["source"] for c in conversations for im in c["images"])
    assert users["user"] > 0 and users["assistant"] > 0


def test_edits_keep_the_layout_and_change_what_was_asked(conversations):
    n_edits = 0
    for conv in conversations:
        scenes = {im["file_name"]: sh.Scene.from_dict(im["scene"]) for im in conv["images"]}
        for turn in (t for t in conv["turns"] if t["kind"] == "edit"):
            before, after = scenes[turn["image"]], scenes[turn["answer"]]
            request = conv["messages"][turn["message"] - 1]["content"][-1]["text"]
            assert request.startswith("now make ")
            assert after.background == before.background and after.groups_of == before.groups_of
            changed = [(a, b) for a, b in zip(before.objects, after.objects) if a != b]
            assert changed and all((a.cx, a.cy, a.size) == (b.cx, b.cy, b.size) for a, b in changed)
            new_words = {b.color for _, b in changed} | {b.shape for _, b in changed}
            assert any(w in request for w in new_words), (request, changed)
            assert sh.parse_caption(turn["caption"]) == after.spec
            n_edits += 1
    assert n_edits >= 20


def test_edited_scene_and_reference():
    scene = sh.sample_scene(sh.split_rng(2, 0), kind="relation")
    green = edited_scene(scene, 1, color="green" if scene.spec.groups[1].color != "green" else "red")
    assert [o.color for o, k in zip(green.objects, green.groups_of) if k == 1][0] in ("green", "red")
    assert [o for o, k in zip(green.objects, green.groups_of) if k == 0] == [
        o for o, k in zip(scene.objects, scene.groups_of) if k == 0
    ]
    objs = [
        sh.ShapeObject("red", "circle", 10, 10, 8),
        sh.ShapeObject("red", "square", 30, 10, 8),
        sh.ShapeObject("blue", "square", 50, 10, 8),
    ]
    assert [reference(o, objs) for o in objs] == ["the circle", "the red square", "the blue object"]
    assert reference(objs[0], objs + [sh.ShapeObject("red", "circle", 10, 40, 8)]) is None


def test_written_folder_loads(tmp_path):
    sizes = write_shapes_chat_dataset(tmp_path / "c", n=10, seed=2, test_fraction=0.2)
    assert sizes == {"train": 8, "test": 2}
    ds = load_shapes_chat(tmp_path / "c", cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 8 and ds["test"].num_rows == 2
    row, ref = ds["train"][3], make_shapes_chat_example(2, 3)
    assert row["id"] == ref["id"] and row["turns"] == ref["turns"]
    assert [m["content"] for m in row["messages"]] == [m["content"] for m in ref["messages"]]
    for im, want in zip(row["images"], ref["images"]):
        assert json.loads(im["scene"]) == want["scene"] and im["caption"] == want["caption"]
        got = open_image(tmp_path / "c", "train", im["file_name"])
        assert np.array_equal(np.asarray(got), np.asarray(want["image"]))  # PNGs are lossless
    lines = (tmp_path / "c" / "train" / "conversations.jsonl").read_text().splitlines()
    small = write_shapes_chat_dataset(tmp_path / "s", n=3, seed=2)
    assert small == {"train": 3}
    assert (tmp_path / "s" / "train" / "conversations.jsonl").read_text().splitlines() == lines[:3]
    with pytest.raises(FileExistsError):
        write_shapes_chat_dataset(tmp_path / "s", n=3, seed=2)


def test_make_data_cli(tmp_path, capsys):
    out = tmp_path / "chat"
    args = ["make-data", "shapes-chat", "--out", str(out), "--n", "4", "--seed", "0", "--quiet"]
    assert main(args) == 0
    assert "wrote shapes-chat: 4 train conversations" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "train" / "conversations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [make_shapes_chat_example(0, i)["id"] for i in range(4)]
    assert all((out / "train" / im["file_name"]).is_file() for r in rows for im in r["images"])
    assert main([*args, "--num-frames", "9"]) == 2
    assert "moving-shapes only" in capsys.readouterr().err


def test_cell_aligns_the_drawn_images_only():
    drawn, user_on_grid, user = 0, 0, 0
    for i in range(60):
        conv = make_shapes_chat_example(2, i, cell=8)
        scenes = {im["file_name"]: sh.Scene.from_dict(im["scene"]) for im in conv["images"]}
        draws = {t["answer"] for t in conv["turns"] if t["kind"] == "draw"}
        for im in conv["images"]:
            scene = scenes[im["file_name"]]
            assert sh.scene_errors(scene) == []
            on_grid = all(o.cx % 8 == 4 and o.cy % 8 == 4 for o in scene.objects)
            if im["file_name"] in draws:
                drawn += 1
                assert on_grid, im["caption"]
            elif im["source"] == "user":  # a user's image can be anything: free placement
                user, user_on_grid = user + 1, user_on_grid + on_grid
    assert drawn >= 20 and user >= 10 and user_on_grid <= user // 10
