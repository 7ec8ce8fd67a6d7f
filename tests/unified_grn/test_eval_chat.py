"""The chat checker: answer normalisation, and shapes-chat answers recovered from the pixels alone.

An oracle written here answers every shapes-chat question from the image with the detector
(``unified_grn.eval.detect``) and a parser of the question templates: it scores >= 0.98 (measured
1.000 on 150 conversations), so the data's answers are what the images show and the checker
accepts right answers; answers taken from other turns of the same kind, and images scored
against other captions, fall well below.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from unified_grn.data import shapes as sh
from unified_grn.data.shapes_chat import NUMBER_WORDS, make_shapes_chat_example
from unified_grn.eval.chat import answer_correct, answer_words, evaluate_chat, normalize_answer, score_turn
from unified_grn.eval.detect import Detection, detect_objects

N_CONV = 150


@pytest.fixture(scope="module")
def conversations() -> list[dict]:
    return [make_shapes_chat_example(4, i) for i in range(N_CONV)]


def find(dets: list[Detection], ref: str) -> Detection:
    """The detection a reference phrase ("the square", "the blue object", "the blue square") names."""
    words = ref.split()[1:]
    if words[-1] == "object":
        (d,) = [d for d in dets if d.color == words[0]]
    elif len(words) == 1:
        (d,) = [d for d in dets if d.shape == words[0]]
    else:
        (d,) = [d for d in dets if (d.color, d.shape) == tuple(words)]
    return d


def where(d: Detection, size: int) -> str:
    col = 0 if d.cx < size / 3 else 2 if d.cx > 2 * size / 3 else 1
    row = 0 if d.cy < size / 3 else 2 if d.cy > 2 * size / 3 else 1
    return {(0, 1): "left", (2, 1): "right", (1, 0): "top", (1, 2): "bottom", (1, 1): "center"}[(col, row)]


def oracle(question: str, image: np.ndarray) -> str:
    """Answer a shapes-chat question by looking at the image."""
    dets = detect_objects(image)
    ref = r"(the \w+(?: \w+)?)"
    if question == "how many objects are there?":
        return NUMBER_WORDS[len(dets)]
    if m := re.fullmatch(r"how many (?:(\w+) )?(\w+)s are there\?", question):
        color, shape = m.groups()
        return NUMBER_WORDS[sum(d.shape == shape and color in (None, d.color) for d in dets)]
    if m := re.fullmatch(r"what colour (?:is|are) the (\w+?)s?\?", question):
        (color,) = {d.color for d in dets if d.shape == m.group(1)}
        return color
    if m := re.fullmatch(r"what shape (is|are) the (\w+) objects?\?", question):
        (shape,) = {d.shape for d in dets if d.color == m.group(2)}
        return shape if m.group(1) == "is" else shape + "s"
    if m := re.fullmatch(rf"where is {ref}\?", question):
        return sh.POSITIONS[where(find(dets, m.group(1)), image.shape[1])]
    if m := re.fullmatch(rf"is {ref} (left or right of|above or below) {ref}\?", question):
        a, b = find(dets, m.group(1)), find(dets, m.group(3))
        if m.group(2) == "left or right of":
            return "left" if a.cx < b.cx else "right"
        return "above" if a.cy < b.cy else "below"
    if m := re.fullmatch(r"is there an? (\w+) (\w+)\?", question):
        return "yes" if any((d.color, d.shape) == m.groups() for d in dets) else "no"
    raise AssertionError(f"unknown question {question!r}")


def turns_with_inputs(conversations):
    """(turn, the user's text, the image the turn is about as an array, images by name)."""
    for conv in conversations:
        images = {im["file_name"]: np.asarray(im["image"]) for im in conv["images"]}
        for turn in conv["turns"]:
            user = conv["messages"][turn["message"] - 1]
            text = next(c["text"] for c in user["content"] if c["type"] == "text")
            yield turn, text, images.get(turn["image"]), images


def test_oracle_from_pixels_answers_every_question(conversations):
    pairs = []
    for turn, text, image, images in turns_with_inputs(conversations):
        if turn["answer_type"] == "text":
            pairs.append((oracle(text, image), turn))
        else:  # the expected image itself passes the T2I check of its caption
            pairs.append((images[turn["answer"]], turn))
    report = evaluate_chat(pairs)
    print(f"chat oracle from pixels ({report.n} turns): {report.to_dict()}")
    assert report.accuracy >= 0.98 and report.image_accuracy >= 0.98
    assert set(report.per_kind) >= {"count", "color", "shape", "position", "relation", "exists", "draw"}


def test_wrong_answers_and_images_drop(conversations):
    turns = [(t, images) for t, _, _, images in turns_with_inputs(conversations)]
    text = [t for t, _ in turns if t["answer_type"] == "text"]
    by_kind: dict[str, list[str]] = {}
    for t in text:
        by_kind.setdefault(t["kind"], []).append(t["answer"])
    rng = np.random.default_rng(0)
    shuffled = [(str(rng.choice(by_kind[t["kind"]])), t) for t in text]  # another turn's answer
    report = evaluate_chat(shuffled)
    print(f"chat answers from other turns: {report.accuracy:.3f}")
    assert report.accuracy <= 0.6
    image_turns = [(t, images[t["answer"]]) for t, images in turns if t["answer_type"] == "image"]
    previous = [image_turns[i - 1][1] for i in range(len(image_turns))]  # the image of another turn
    image_report = evaluate_chat((img, t) for img, (t, _) in zip(previous, image_turns))
    print(f"chat images against other captions: {image_report.image_accuracy:.3f}")
    assert image_report.image_accuracy <= 0.1


def test_normalisation_and_lenient_matching():
    assert normalize_answer("  The Colour is RED. ") == "the color is red"
    assert normalize_answer("3 Circles!") == "three circle"
    assert answer_correct("There are 3 triangles.", "three", "count")
    assert answer_correct("three", "three", "count") and answer_correct("none", "zero", "count")
    assert not answer_correct("two or three", "three", "count")
    assert not answer_correct("four", "three", "count")
    assert answer_correct("It is on the LEFT side", "on the left", "position")
    assert not answer_correct("top left", "on the left", "position")
    assert answer_correct("centre", "in the center", "position")
    assert answer_correct("circles", "circles", "shape") and answer_correct("a circle", "circles", "shape")
    assert answer_correct("Red.", "red", "color") and not answer_correct("red and blue", "red", "color")
    assert answer_correct("yes", "yes", "exists") and not answer_correct("yes no", "yes", "exists")
    assert answer_correct("left of it", "left", "relation") and not answer_correct(
        "right", "left", "relation"
    )
    assert not answer_correct("", "red", "color")
    assert answer_correct("Red!", "red") and not answer_correct("a red one", "red")  # no kind: exact
    assert answer_words("no triangles", "count") == {"zero"}


def test_score_turn_types(conversations):
    text_turn = next(t for c in conversations for t in c["turns"] if t["answer_type"] == "text")
    image_turn = next(t for c in conversations for t in c["turns"] if t["answer_type"] == "image")
    assert score_turn(text_turn["answer"], text_turn)
    assert not score_turn(np.zeros((64, 64, 3), np.uint8), text_turn)  # an image where text was asked
    assert not score_turn("a red circle", image_turn)  # text where an image was asked
    with pytest.raises(ValueError):
        evaluate_chat([])
