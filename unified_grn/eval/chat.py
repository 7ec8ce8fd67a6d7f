"""Chat checker: answer accuracy on ``shapes-chat`` turns (``unified_grn.data.shapes_chat``).

Text turns (questions about an image: count, colour, shape, position, relation, exists) compare
the model's answer with the expected one after normalisation: lower case, no punctuation,
British spellings to American ("colour", "centre"), digits to number words, plural shape nouns
to singular. With the question kind known, the comparison is by *answer words*: the words of the
kind's vocabulary found in each answer (``ANSWER_WORDS``) must be the same non-empty set, so
"There are 3 triangles." answers "three", "it is on the left side" answers "on the left", and
"two or three" answers neither. Without a kind, the normalised strings must be equal.

Image turns (``draw``, ``edit``) are scored by the GenEval-style checker (Ghosh et al. 2023;
``unified_grn.eval.t2i``) against the caption of the expected image: the reply is correct when
the image passes every check of that caption.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from unified_grn.data.shapes import COLORS, SHAPES
from unified_grn.data.shapes_chat import IMAGE_KINDS, NUMBER_WORDS, QUESTION_KINDS
from unified_grn.eval.t2i import score_t2i

__all__ = [
    "ANSWER_WORDS",
    "ChatReport",
    "answer_correct",
    "answer_words",
    "evaluate_chat",
    "normalize_answer",
    "score_turn",
]

ANSWER_WORDS: dict[str, frozenset[str]] = {
    "count": frozenset(NUMBER_WORDS),
    "color": frozenset(COLORS),
    "shape": frozenset(SHAPES),
    "position": frozenset({"left", "right", "top", "bottom", "center"}),
    "relation": frozenset({"left", "right", "above", "below"}),
    "exists": frozenset({"yes", "no"}),
}
_SPELLING = {"colour": "color", "colours": "colors", "centre": "center", "middle": "center", "grey": "gray"}
_SINGULAR = {s + "s": s for s in SHAPES}
_COUNT_ALIASES = {"none": "zero", "no": "zero", "a": "one", "an": "one", "single": "one"}


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, spellings unified, digits as words, shape nouns singular."""
    words = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    out = []
    for w in words:
        if w.isdigit() and int(w) < len(NUMBER_WORDS):
            w = NUMBER_WORDS[int(w)]
        w = _SPELLING.get(w, w)
        out.append(_SINGULAR.get(w, w))
    return " ".join(out)


def answer_words(text: str, kind: str) -> frozenset[str]:
    """The words of ``kind``'s answer vocabulary in a normalised answer."""
    vocab = ANSWER_WORDS[kind]
    words = normalize_answer(text).split()
    if kind == "count":
        found = {w for w in words if w in vocab}
        if not found:  # "no triangles", "a single one": only when no number word is given
            found = {_COUNT_ALIASES[w] for w in words if w in _COUNT_ALIASES}
        return frozenset(found)
    return frozenset(w for w in words if w in vocab)


def answer_correct(prediction: str, expected: str, kind: str | None = None) -> bool:
    """Whether a text answer matches the expected one (see the module docstring)."""
    if kind is None or kind not in ANSWER_WORDS:
        return normalize_answer(prediction) == normalize_answer(expected)
    want = answer_words(expected, kind)
    return bool(want) and answer_words(prediction, kind) == want


def score_turn(prediction: str | np.ndarray | Image.Image, turn: dict) -> bool:
    """Score a model's reply to one ``shapes-chat`` turn (a row of the data set's ``turns``).

    Text turns take the answer text; image turns (``draw``/``edit``) take the generated image,
    scored against ``turn["caption"]``.
    """
    if turn["kind"] in IMAGE_KINDS:
        if isinstance(prediction, str):
            return False  # text where an image was asked for
        return score_t2i(prediction, turn["caption"]).correct
    if not isinstance(prediction, str):
        return False
    return answer_correct(prediction, turn["answer"], turn["kind"])


@dataclass
class ChatReport:
    """Accuracy over chat turns.

    Attributes:
        accuracy: fraction of text (question) turns answered correctly: the chat-answer score.
        image_accuracy: fraction of image turns (draw / edit) whose image passes the T2I
            checker, or None when there were none.
        per_kind: accuracy per turn kind present.
        counts: number of turns per kind.
        n: number of turns scored.
    """

    accuracy: float | None
    image_accuracy: float | None
    per_kind: dict[str, float]
    counts: dict[str, int]
    n: int
    correct: list[bool] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        keys = ("accuracy", "image_accuracy", "per_kind", "counts", "n")
        return {k: getattr(self, k) for k in keys}


def evaluate_chat(pairs: Iterable[tuple[str | np.ndarray | Image.Image, dict]]) -> ChatReport:
    """Score ``(prediction, turn)`` pairs; return text-answer and image-turn accuracies."""
    by_kind: dict[str, list[bool]] = defaultdict(list)
    correct = []
    for prediction, turn in pairs:
        ok = score_turn(prediction, turn)
        by_kind[turn["kind"]].append(ok)
        correct.append(ok)
    if not correct:
        raise ValueError("no turns to evaluate")
    text = [v for k in QUESTION_KINDS for v in by_kind.get(k, [])]
    image = [v for k in IMAGE_KINDS for v in by_kind.get(k, [])]
    return ChatReport(
        accuracy=float(np.mean(text)) if text else None,
        image_accuracy=float(np.mean(image)) if image else None,
        per_kind={k: float(np.mean(v)) for k, v in by_kind.items()},
        counts={k: len(v) for k, v in by_kind.items()},
        n=len(correct),
        correct=correct,
    )
