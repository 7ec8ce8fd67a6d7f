"""The procedural ``shapes-chat`` world: multi-turn conversations interleaving text and shapes images.

Built on the ``shapes`` world (``unified_grn.data.shapes``: same palette, scenes, renderer and
caption grammar), for training and scoring the chat ability. A conversation has 2-4 exchanges
(a user message, then the assistant's reply), each one of:

- ``draw``: "draw two red circles above a blue square" -> the assistant replies with an image,
  the rendered scene of that caption;
- a question about an image, either a new image the user attaches or, with text alone, the most
  recent image of the conversation (the user's or the assistant's): ``count`` "how many triangles
  are there?" -> "three" (also "zero"); ``color`` "what colour is the circle?" -> "red";
  ``shape`` "what shape is the blue object?" -> "square" ("squares" when plural); ``position``
  "where is the square?" -> "on the left" (a ``shapes.POSITIONS`` phrase); ``relation`` "is the
  red circle left or right of the green square?" -> "left" (or "above or below" -> "above");
  ``exists`` "is there a blue triangle?" -> "yes" / "no" (equally often). A question's kind is
  drawn among those the image allows with ``QUESTION_WEIGHTS``, so the rarely possible position
  and relation questions are not rare in the data;
- ``edit``: a follow-up on the most recent image, "now make it green", "now make them squares",
  "now make the red circle blue" -> an image with the same layout and background, recoloured or
  reshaped (bounding boxes are kept, so the scene stays valid).

Every question has one unambiguous answer: objects are named by the shortest unique phrase ("the
square", "the blue object", "the blue square"), positions and relations are asked only where the
``shapes`` generator's strict rules (margins, dominance) hold, so a pixel-level checker
(``unified_grn.eval``) recovers every answer from the image alone.

A generated image re-enters the context clean, as a user's image does: on disk an assistant
image is a PNG referenced exactly like a user's, so in every later turn a model reads it from its
pixels (clean tokens), never from the sampling state that produced it.

Format (``make_shapes_chat_example`` in memory, ``write_shapes_chat_dataset`` on disk). One JSON
line per conversation in ``out_dir/<split>/conversations.jsonl``, PNGs beside it:

- ``id``: the file stem ``NNNNNN``;
- ``messages``: ``[{"role": "user" | "assistant", "content": [item, ...]}]`` with items
  ``{"type": "text", "text": str}`` or ``{"type": "image", "image": "NNNNNN_j.png"}`` (a file
  name relative to the split folder; a user's image comes before the text);
- ``turns``: one per assistant message: ``message`` (its index in ``messages``), ``kind``
  (``TURN_KINDS``), ``answer_type`` ("text" or "image"), ``answer`` (the expected text, or the
  reply's image file), ``image`` (the image the turn is about; None for ``draw``), ``caption``
  (the ``shapes`` caption of the reply's image, for the T2I checker; None for text answers);
- ``images``: ``[{"file_name", "caption", "scene" (JSON string of Scene.to_dict()), "source"
  ("user" | "assistant")}]`` in order of appearance.

It loads with ``datasets.load_dataset("json", data_files=...)`` (``load_shapes_chat``).
Determinism: conversation ``i`` of a split depends only on (seed, split, i), as in ``shapes``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from unified_grn.data.folders import split_rng, split_sizes, write_split_folders
from unified_grn.data.shapes import (
    COLORS,
    MIN_IMAGE_SIZE,
    POSITIONS,
    SHAPES,
    CaptionSpec,
    Group,
    Scene,
    ShapeObject,
    check_cell,
    position_holds,
    relation_holds,
    render_scene,
    sample_scene,
    scene_errors,
)

logger = logging.getLogger(__name__)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
QUESTION_KINDS = ("count", "color", "shape", "position", "relation", "exists")
# A question's kind is drawn among the kinds a scene allows with these weights, which offset how
# rarely position (42 % of scenes) and relation (24 %) questions are possible: about 1/6 each.
QUESTION_WEIGHTS = {"count": 1.0, "color": 1.0, "shape": 1.0, "position": 2.5, "relation": 4.0, "exists": 1.0}
IMAGE_KINDS = ("draw", "edit")
TURN_KINDS = IMAGE_KINDS + QUESTION_KINDS
EXCHANGES = (2, 4)  # min, max exchanges per conversation
FIRST_ACTIONS = {"draw": 0.5, "ask_image": 0.5}
NEXT_ACTIONS = {"draw": 0.15, "ask_image": 0.15, "ask": 0.45, "edit": 0.25}
DRAW_TEMPLATES = ("draw {}", "please draw {}", "can you draw {}?", "show me {}", "make an image of {}")
METADATA_NAME = "conversations.jsonl"


@dataclass
class _Conversation:
    """A conversation being built: messages, per-turn metadata, images (name -> scene)."""

    stem: str
    size: int
    messages: list[dict] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    images: dict[str, tuple[Scene, str]] = field(default_factory=dict)  # name -> (scene, source)
    focus: str | None = None  # the most recent image

    def add_image(self, scene: Scene, source: str) -> str:
        name = f"{self.stem}_{len(self.images)}.png"
        self.images[name] = (scene, source)
        self.focus = name
        return name

    def exchange(self, user: list[dict], kind: str, answer: str, about: str | None) -> None:
        """Append a user message and the assistant's text reply."""
        self.messages.append({"role": "user", "content": user})
        self.messages.append({"role": "assistant", "content": [_text(answer)]})
        self.turns.append(_turn(len(self.messages) - 1, kind, "text", answer, about, None))

    def exchange_image(self, user: list[dict], kind: str, scene: Scene, about: str | None) -> None:
        """Append a user message and the assistant's image reply (which becomes the focus)."""
        name = self.add_image(scene, "assistant")
        self.messages.append({"role": "user", "content": user})
        self.messages.append({"role": "assistant", "content": [_image(name)]})
        self.turns.append(_turn(len(self.messages) - 1, kind, "image", name, about, scene.caption))


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image(name: str) -> dict:
    return {"type": "image", "image": name}


def _turn(message: int, kind: str, answer_type: str, answer: str, image: str | None, caption: str | None):
    return {
        "message": message,
        "kind": kind,
        "answer_type": answer_type,
        "answer": answer,
        "image": image,
        "caption": caption,
    }


def _pick(rng: np.random.Generator, items: list | tuple):
    return items[int(rng.integers(len(items)))]


# ----------------------------------------------------------------------------- questions


def _plural(shape: str) -> str:
    return shape + "s"


def reference(o: ShapeObject, objects: list[ShapeObject]) -> str | None:
    """The shortest phrase naming ``o`` alone among ``objects``: "the square", "the blue object"..."""
    if sum(p.shape == o.shape for p in objects) == 1:
        return f"the {o.shape}"
    if sum(p.color == o.color for p in objects) == 1:
        return f"the {o.color} object"
    if sum((p.color, p.shape) == (o.color, o.shape) for p in objects) == 1:
        return f"the {o.color} {o.shape}"
    return None


def _count_questions(objs: list[ShapeObject]) -> list[tuple[str, str]]:
    out = [("how many objects are there?", NUMBER_WORDS[len(objs)])]
    for s in SHAPES:
        out.append((f"how many {_plural(s)} are there?", NUMBER_WORDS[sum(o.shape == s for o in objs)]))
    for c, s in sorted({(o.color, o.shape) for o in objs}):
        n = sum((o.color, o.shape) == (c, s) for o in objs)
        out.append((f"how many {c} {_plural(s)} are there?", NUMBER_WORDS[n]))
    return out


def _attribute_questions(objs: list[ShapeObject]) -> dict[str, list[tuple[str, str]]]:
    color, shape = [], []
    for s in sorted({o.shape for o in objs}):
        colors = {o.color for o in objs if o.shape == s}
        n = sum(o.shape == s for o in objs)
        if len(colors) == 1:
            q = f"what colour is the {s}?" if n == 1 else f"what colour are the {_plural(s)}?"
            color.append((q, colors.pop()))
    for c in sorted({o.color for o in objs}):
        shapes = {o.shape for o in objs if o.color == c}
        n = sum(o.color == c for o in objs)
        if len(shapes) == 1:
            s = shapes.pop()
            q = f"what shape is the {c} object?" if n == 1 else f"what shape are the {c} objects?"
            shape.append((q, s if n == 1 else _plural(s)))
    return {"color": color, "shape": shape}


def _spatial_questions(objs: list[ShapeObject], size: int) -> dict[str, list[tuple[str, str]]]:
    position, relation = [], []
    refs = [(o, reference(o, objs)) for o in objs]
    refs = [(o, r) for o, r in refs if r is not None]
    for o, r in refs:
        where = [p for p in POSITIONS if position_holds(o, p, size, single=True)]
        if len(where) == 1:
            position.append((f"where is {r}?", POSITIONS[where[0]]))
    for a, ra in refs:
        for b, rb in refs:
            if a is b:
                continue
            for pair, words in (
                (("left_of", "right_of"), "left or right of"),
                (("above", "below"), "above or below"),
            ):
                holds = [rel for rel in pair if relation_holds(a, b, rel, size)]
                if len(holds) == 1:
                    answer = {"left_of": "left", "right_of": "right"}.get(holds[0], holds[0])
                    relation.append((f"is {ra} {words} {rb}?", answer))
    return {"position": position, "relation": relation}


def scene_questions(scene: Scene, rng: np.random.Generator | None = None) -> dict[str, list[tuple[str, str]]]:
    """Every (question, answer) the world may ask about a scene, by kind (empty kinds omitted).

    ``exists`` holds one "yes" and one "no" question, drawn with ``rng`` (the first ones in
    ``COLORS`` x ``SHAPES`` order without it).
    """
    objs = scene.objects
    out = {"count": _count_questions(objs), **_attribute_questions(objs)}
    out.update(_spatial_questions(objs, scene.image_size))
    present = sorted({(o.color, o.shape) for o in objs})
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    yes = present[int(rng.integers(len(present)))] if rng is not None else present[0]
    no = absent[int(rng.integers(len(absent)))] if rng is not None else absent[0]
    out["exists"] = [(f"is there {_article(c)} {c} {s}?", a) for (c, s), a in ((yes, "yes"), (no, "no"))]
    return {k: out[k] for k in QUESTION_KINDS if out.get(k)}


def _article(color: str) -> str:
    return "an" if color[0] in "aeiou" else "a"


# ----------------------------------------------------------------------------- edits


def edited_scene(scene: Scene, group: int, color: str | None = None, shape: str | None = None) -> Scene:
    """The scene with every object of caption group ``group`` recoloured and/or reshaped."""
    g = scene.spec.groups[group]
    new = Group(g.count, color or g.color, shape or g.shape)
    groups = tuple(new if i == group else h for i, h in enumerate(scene.spec.groups))
    objects = [
        replace(o, color=new.color, shape=new.shape) if k == group else o
        for o, k in zip(scene.objects, scene.groups_of)
    ]
    spec = CaptionSpec(groups, scene.spec.relation, scene.spec.position)
    return Scene(scene.kind, spec, objects, scene.background, scene.image_size, list(scene.groups_of))


def _edit_request(scene: Scene, group: int, color: str | None, shape: str | None) -> str:
    g, single_group = scene.spec.groups[group], len(scene.spec.groups) == 1
    if single_group:
        target = "it" if g.count == 1 else "them"
    else:
        target = f"the {g.color} {g.shape if g.count == 1 else _plural(g.shape)}"
    if color is not None:
        return f"now make {target} {color}"
    return f"now make {target} {'a ' + shape if g.count == 1 else _plural(shape)}"


def sample_edit(scene: Scene, rng: np.random.Generator) -> tuple[str, Scene]:
    """A recolouring or reshaping request for ``scene`` and the scene it asks for."""
    while True:
        group = int(rng.integers(len(scene.spec.groups)))
        g = scene.spec.groups[group]
        if rng.random() < 0.5:
            color, shape = _pick(rng, [c for c in COLORS if c != g.color]), None
        else:
            color, shape = None, _pick(rng, [s for s in SHAPES if s != g.shape])
        new = edited_scene(scene, group, color, shape)
        if len({(h.color, h.shape) for h in new.spec.groups}) == len(new.spec.groups):
            assert not scene_errors(new), scene_errors(new)
            return _edit_request(scene, group, color, shape), new


# ----------------------------------------------------------------------------- conversations


def _ask(conv: _Conversation, rng: np.random.Generator, attach: bool) -> None:
    """A question about the focused image (attached to the user message when ``attach``)."""
    scene = conv.images[conv.focus][0]
    questions = scene_questions(scene, rng)
    kinds = list(questions)
    weights = np.array([QUESTION_WEIGHTS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    question, answer = _pick(rng, questions[kind])
    user = ([_image(conv.focus)] if attach else []) + [_text(question)]
    conv.exchange(user, kind, answer, conv.focus)


def make_conversation(
    rng: np.random.Generator, size: int = 64, stem: str = "000000", cell: int | None = None
) -> _Conversation:
    """Draw one conversation (see the module docstring) from a numpy Generator.

    ``cell`` places the objects of the images the assistant draws on a ``cell``-px grid's cell
    centres (``shapes.sample_scene``); a user's images keep free placement, since a user's image
    can be anything.
    """
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    check_cell(cell, size)
    conv = _Conversation(stem, size)
    for _ in range(int(rng.integers(EXCHANGES[0], EXCHANGES[1] + 1))):
        table = FIRST_ACTIONS if conv.focus is None else NEXT_ACTIONS
        action = str(rng.choice(list(table), p=list(table.values())))
        if action == "draw":
            scene = sample_scene(rng, size, cell=cell)
            request = _pick(rng, DRAW_TEMPLATES).format(scene.caption)
            conv.exchange_image([_text(request)], "draw", scene, None)
        elif action == "ask_image":
            conv.add_image(sample_scene(rng, size), "user")
            _ask(conv, rng, attach=True)
        elif action == "ask":
            _ask(conv, rng, attach=False)
        else:
            source = conv.focus
            request, scene = sample_edit(conv.images[source][0], rng)
            conv.exchange_image([_text(request)], "edit", scene, source)
    return conv


def make_shapes_chat_example(
    seed: int,
    index: int,
    size: int = 64,
    split: str = "train",
    stem: str | None = None,
    cell: int | None = None,
) -> dict:
    """Conversation ``index``: ``{"id", "messages", "turns", "images"}`` (see the module docstring).

    In memory each ``images`` entry also holds ``"image"``, the rendered PIL image, and ``scene``
    is a dict (a JSON string on disk). ``stem`` names the files (default ``f"{index:06d}"``).
    """
    stem = f"{index:06d}" if stem is None else stem
    conv = make_conversation(split_rng(seed, index, split), size, stem, cell)
    images = [
        {
            "file_name": name,
            "caption": scene.caption,
            "scene": scene.to_dict(),
            "source": source,
            "image": render_scene(scene),
        }
        for name, (scene, source) in conv.images.items()
    ]
    return {"id": stem, "messages": conv.messages, "turns": conv.turns, "images": images}


def write_shapes_chat_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    test_fraction: float = 0.0,
    overwrite: bool = False,
    progress: bool = False,
    cell: int | None = None,
) -> dict[str, int]:
    """Write ``train/`` (and optionally ``test/``): ``conversations.jsonl`` + PNGs; return split sizes."""
    split_sizes(n, test_fraction)  # validate before touching the disk
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be >= {MIN_IMAGE_SIZE} px, got {size}")
    check_cell(cell, size)

    def write_sample(path: Path, split: str, i: int, stem: str) -> dict:
        ex = make_shapes_chat_example(seed, i, size, split, stem, cell)
        for im in ex["images"]:
            im.pop("image").save(path / im["file_name"])
            im["scene"] = json.dumps(im["scene"])
        return ex

    return write_split_folders(
        out_dir,
        n,
        test_fraction,
        write_sample,
        metadata_name=METADATA_NAME,
        overwrite=overwrite,
        progress=progress,
        desc="shapes-chat",
    )


def load_shapes_chat(data_dir: str | Path, **kwargs):
    """``datasets.load_dataset("json")`` over the splits of a written shapes-chat folder.

    Image references are file names relative to ``data_dir/<split>/``.
    """
    import datasets

    files = {s: str(Path(data_dir) / s / METADATA_NAME) for s in ("train", "test")}
    files = {s: f for s, f in files.items() if Path(f).is_file()}
    if not files:
        raise FileNotFoundError(f"no {METADATA_NAME} under {data_dir}/train or {data_dir}/test")
    return datasets.load_dataset("json", data_files=files, **kwargs)


def open_image(data_dir: str | Path, split: str, name: str) -> Image.Image:
    """Open one image of a written conversation as RGB."""
    return Image.open(Path(data_dir) / split / name).convert("RGB")
