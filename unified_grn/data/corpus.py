"""The text of the procedural worlds, as one corpus: what a text tokenizer for them is trained on.

The shipped model's text tokenizer (``scripts/make_shapes_backbone.py``) is a byte-level BPE
trained on every string a model of the ``shapes`` / ``moving-shapes`` / ``shapes-chat`` worlds
reads or writes: captions, video captions, user requests and questions, assistant answers and the
chat role prefixes. Byte-level BPE keeps every UTF-8 string encodable, so text outside the grammar
still works; the grammar's words simply become single tokens.

Determinism: item ``i`` of each world comes from ``(seed, "train", i)`` exactly as in the datasets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from unified_grn.data.examples import CHAT_ROLE_PREFIXES, CHAT_TURN_SEPARATOR
from unified_grn.data.moving_shapes import make_moving_shapes_example
from unified_grn.data.shapes import make_shapes_example
from unified_grn.data.shapes_chat import make_shapes_chat_example

__all__ = ["folder_texts", "shapes_world_texts"]


def _chat_texts(seed: int, num_conversations: int, size: int) -> Iterator[str]:
    for i in range(num_conversations):
        conversation = make_shapes_chat_example(seed, i, size=size)
        lines = []
        for message in conversation["messages"]:
            prefix = CHAT_ROLE_PREFIXES.get(message["role"], f"{message['role'].capitalize()}: ")
            texts = [item["text"] for item in message["content"] if item["type"] == "text"]
            lines.append(prefix + " ".join(texts))
        yield CHAT_TURN_SEPARATOR.join(lines)


def shapes_world_texts(
    num_images: int = 4000,
    num_videos: int = 1000,
    num_conversations: int = 2000,
    seed: int = 0,
    size: int = 64,
) -> Iterator[str]:
    """Captions of ``num_images`` shapes scenes, ``num_videos`` moving-shapes clips and the text of
    ``num_conversations`` shapes-chat conversations (one string per conversation, role prefixes
    included, messages joined by the turn separator)."""
    for i in range(num_images):
        yield make_shapes_example(seed, i, size=size)["text"]
    for i in range(num_videos):
        yield make_moving_shapes_example(seed, i, size=size, num_frames=5)["text"]
    yield from _chat_texts(seed, num_conversations, size)


def folder_texts(folder: str | Path, metadata_name: str = "metadata.jsonl") -> Iterator[str]:
    """The ``text`` of every row of a data folder's metadata (``folder/metadata.jsonl``, or the
    train split's, ``folder/train/metadata.jsonl``): the captions of a real data set (Twemoji)."""
    folder = Path(folder)
    path = folder / metadata_name
    if not path.is_file():
        path = folder / "train" / metadata_name
    if not path.is_file():
        raise FileNotFoundError(
            f"no {metadata_name} in {folder} or {folder / 'train'}; point at a folder written by "
            "`grn make-data` / `grn make-data-real` (the train split's captions are read)."
        )
    with open(path) as f:
        for line in f:
            if line.strip():
                text = json.loads(line).get("text", "")
                if text:
                    yield text
