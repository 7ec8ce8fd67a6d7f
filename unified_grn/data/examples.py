"""One data example as every source yields it, and its conversion to a collator ``GRNSample``.

An :class:`Example` is modality-neutral: a task, a caption or document, a class label, a list
of visuals and (for conversations) the message structure. Its visuals are either **pixels**
(raw sources: float in [-1, 1], ``(3, T, H, W)``, an image is ``T = 1``) or **codes** (a token
cache, or after :func:`unified_grn.data.token_cache.encode_examples`: HBQ indices
``(T', H', W', C)`` int64). :func:`to_grn_sample` turns a coded example into the
:class:`~unified_grn.collator.GRNSample` the collator lays out:

==========  =========================================================================
task        segments (``[...]`` = a visual block; the collator adds BOS and markers)
==========  =========================================================================
``t2i``     ``text  [image, target]``  (``text == ""``: unconditional)
``t2v``     ``text  [video, target]``
``c2i``     ``<|class_k|>  [image, target]`` (no label: unconditional)
``text``    ``text (loss)  [EOS (loss)]``
``chat``    per message ``"User: "`` / ``"Assistant: "``, then its items in order, then
            ``"\\n"`` between messages. User text and images are context; assistant text
            is trained, assistant images are targets whose start marker is trained too
            (the model decides to draw); every assistant message ends with a trained EOS
            (when given), so a model learns to end its turn after a reply in either form.
==========  =========================================================================

Conversation messages are ``[{"role": str, "content": [item, ...]}]`` with items
``{"type": "text", "text": str}`` or ``{"type": "image", "index": k}`` (``visuals[k]``).
Image-to-video (frame 0 kept clean) is a training-loop choice on ``t2v`` samples, not a task here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from unified_grn.collator import GRNSample, TextSegment, VisualSegment

__all__ = [
    "CHAT_ROLE_PREFIXES",
    "CHAT_TURN_SEPARATOR",
    "TASKS",
    "Example",
    "Task",
    "conversation_segments",
    "frames_to_pixels",
    "image_to_pixels",
    "to_grn_sample",
]

Task = Literal["t2i", "t2v", "c2i", "text", "chat"]
TASKS: tuple[str, ...] = ("t2i", "t2v", "c2i", "text", "chat")
CHAT_ROLE_PREFIXES = {"user": "User: ", "assistant": "Assistant: ", "system": "System: "}
CHAT_TURN_SEPARATOR = "\n"


@dataclass
class Example:
    """One example (module docstring). ``source`` / ``index`` / ``position`` say where it came from.

    Attributes:
        task: ``"t2i"``, ``"t2v"``, ``"c2i"``, ``"text"`` or ``"chat"``.
        text: the caption (t2i / t2v; ``""`` = unconditional) or the document (text).
        label: the class (c2i); None when unknown (unconditional).
        visuals: pixels ``(3, T, H, W)`` float in [-1, 1], or codes ``(T', H', W', C)`` int64.
        messages: the conversation (chat), image items pointing into ``visuals``.
        source: name of the source it came from.
        index: row of that source.
        position: global position in the mixture stream (-1 outside a mixture).
        id: a readable handle (file name, or ``source[index]``).
    """

    task: Task
    text: str = ""
    label: int | None = None
    visuals: list[torch.Tensor] = field(default_factory=list)
    messages: list[dict] | None = None
    source: str = ""
    index: int = -1
    position: int = -1
    id: str = ""

    @property
    def coded(self) -> bool:
        """True when every visual is codes (integers), i.e. ready for :func:`to_grn_sample`."""
        return all(not v.is_floating_point() for v in self.visuals)


def image_to_pixels(image: Image.Image | np.ndarray) -> torch.Tensor:
    """A PIL image or ``(H, W, 3)`` uint8 array -> ``(3, 1, H, W)`` float in [-1, 1]."""
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    return frames_to_pixels(array[None])


def frames_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames -> ``(3, T, H, W)`` float in [-1, 1]."""
    video = torch.from_numpy(np.array(frames, dtype=np.uint8))  # a writable copy: (T, H, W, 3)
    return video.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)  # (3, T, H, W)


def conversation_segments(
    messages: list[dict], codes: list[torch.Tensor], eos_token_id: int | None = None
) -> list[TextSegment | VisualSegment]:
    """The segments of a conversation (layout in the module docstring)."""
    segments: list[TextSegment | VisualSegment] = []
    for i, message in enumerate(messages):
        role = message["role"]
        assistant = role == "assistant"
        segments.append(TextSegment(CHAT_ROLE_PREFIXES.get(role, f"{role.capitalize()}: ")))
        for item in message["content"]:
            if item["type"] == "text":
                segments.append(TextSegment(item["text"], loss=assistant))
            elif item["type"] == "image":
                segment = VisualSegment(
                    codes[item["index"]], target=assistant, modality="image", start_label=assistant
                )
                segments.append(segment)
            else:
                raise ValueError(f"unknown content item type {item['type']!r}; expected 'text' or 'image'.")
        if assistant and message["content"] and eos_token_id is not None:
            segments.append(TextSegment([eos_token_id], loss=True))
        if i + 1 < len(messages):
            segments.append(TextSegment(CHAT_TURN_SEPARATOR))
    return segments


def to_grn_sample(example: Example, class_token_id=None, eos_token_id: int | None = None) -> GRNSample:
    """A coded :class:`Example` -> the collator's :class:`~unified_grn.collator.GRNSample`.

    Args:
        example: an example whose visuals are codes (see :attr:`Example.coded`).
        class_token_id: ``label -> token id`` (``GRNVocab.class_token_id``); needed for ``c2i``.
        eos_token_id: appended (with loss) after text documents and assistant text replies.
    """
    if not example.coded:
        raise ValueError(
            f"example {example.id or example.index} still holds pixels; encode it first "
            "(unified_grn.data.token_cache.encode_examples) or train from a token cache."
        )
    task = example.task
    if task == "t2i":
        return GRNSample.text_to_image(example.text, example.visuals[0])
    if task == "t2v":
        return GRNSample.text_to_video(example.text, example.visuals[0])
    if task == "c2i":
        target = VisualSegment(example.visuals[0], modality="image")
        if example.label is None:
            return GRNSample([target], task="c2i")
        if class_token_id is None:
            raise ValueError(
                "class-to-image examples need class_token_id (the model's vocab.class_token_id)."
            )
        return GRNSample([TextSegment([class_token_id(example.label)]), target], task="c2i")
    if task == "text":
        return GRNSample.text_only(example.text, eos_token_id)
    if task == "chat":
        return GRNSample(conversation_segments(example.messages or [], example.visuals, eos_token_id), "chat")
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}.")
