"""The chat format: messages -> the training layout of a conversation (text form, ids, truncation).

DESIGN.md ("What users do with it": ``model.chat``) and issue 8. A conversation is laid out
exactly as training lays out a ``chat`` example, by the same code: the segments come from
:func:`unified_grn.data.examples.conversation_segments` (role prefixes ``CHAT_ROLE_PREFIXES``,
``CHAT_TURN_SEPARATOR`` between messages, EOS after every assistant message) and the ids from
:class:`unified_grn.collator.GRNCollator` (BOS, ``<|image_start|>`` / ``<|image_end|>`` around
each image block, block positions). The only inference-time differences:

* every image is a **clean** context block, including the assistant's earlier drawings (training
  holds a noisy target block there, which nothing later can see, and then a clean copy at the same
  positions: the row without its target blocks is this layout);
* with ``add_generation_prompt`` the prompt of a new turn follows: ``"\\n"`` + ``"Assistant: "``.

Messages are ``[{"role": "system" | "user" | "assistant", "content": str | [item, ...]}]``; an item
is text (``{"type": "text", "text": str}`` or a bare ``str``) or an image (``{"type": "image",
"image": X}``, or a bare PIL image / array / ``pathlib.Path``) where ``X`` is a PIL image, an
``(H, W, 3)`` or ``(H, W, 4)`` uint8 array, or a file path. Images are converted to RGB
(transparent pixels become white), resized (shorter side) and centre-cropped to the model's default
image size, and encoded to HBQ codes by the visual tokenizer. In the text form
(:func:`chat_text`) every image is :data:`IMAGE_PLACEHOLDER`.

Truncation (:func:`fit_to_context`): a conversation longer than the backbone's
``max_position_embeddings`` loses its oldest whole turns (a turn: a user message and the replies
after it; system messages before the first user message are kept), with a ``logging`` warning;
it is an error when the last turn alone does not fit, or when truncation is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from unified_grn.collator import GRNBatch, GRNCollator, GRNSample, TextSegment, VisualSegment
from unified_grn.data.examples import CHAT_ROLE_PREFIXES, CHAT_TURN_SEPARATOR, conversation_segments

__all__ = [
    "IMAGE_PLACEHOLDER",
    "ROLES",
    "chat_segments",
    "chat_text",
    "encode_chat_images",
    "fit_to_context",
    "layout_chat",
    "load_chat_image",
    "normalize_messages",
]

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<|image|>"
ROLES: tuple[str, ...] = tuple(CHAT_ROLE_PREFIXES)
_ITEM_HELP = (
    "content items are text ({'type': 'text', 'text': str} or a str) or images ({'type': 'image', "
    "'image': X} or X itself, X a PIL image, an (H, W, 3) uint8 array or a file path)"
)


# ----------------------------------------------------------------------------- messages
def normalize_messages(messages: Any) -> list[dict]:
    """Check ``messages`` and bring them to one form.

    Returns:
        ``[{"role": str, "content": [item, ...]}]`` with items ``{"type": "text", "text": str}``
        or ``{"type": "image", "image": PIL.Image (RGB)}``; the input is left untouched.

    Raises:
        ValueError: an empty list, a message without role / content, an unknown role, content of
            an unknown type, or an image of the wrong kind. FileNotFoundError: a missing image file.
    """
    if isinstance(messages, dict):
        raise ValueError("messages must be a list of messages; wrap a single message in a list: [message].")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}."
        )
    if not messages:
        raise ValueError(
            "messages is empty: pass at least one message, e.g. [{'role': 'user', 'content': 'hi'}]."
        )
    return [_normalize_message(m, i) for i, m in enumerate(messages)]


def _normalize_message(message: Any, i: int) -> dict:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise ValueError(f"message {i} must be a dict with 'role' and 'content' keys, got {_short(message)}.")
    role = message["role"]
    if role not in ROLES:
        raise ValueError(
            f"message {i} has role {role!r}; the chat format knows only {', '.join(map(repr, ROLES))}."
        )
    content = message["content"]
    if isinstance(content, str):
        content = [content]
    elif isinstance(content, (Image.Image, np.ndarray, Path)):
        content = [content]
    elif not isinstance(content, (list, tuple)):
        raise ValueError(
            f"message {i} ({role}) has content of type {type(content).__name__}; content is a str or a list "
            f"of items: {_ITEM_HELP}."
        )
    items = [_normalize_item(item, f"message {i} ({role}), item {j}") for j, item in enumerate(content)]
    return {"role": role, "content": items}


def _normalize_item(item: Any, where: str) -> dict:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, (Image.Image, np.ndarray, Path)):
        return {"type": "image", "image": load_chat_image(item, where)}
    if not isinstance(item, dict) or "type" not in item:
        raise ValueError(f"{where} is {_short(item)}; {_ITEM_HELP}.")
    kind = item["type"]
    if kind == "text":
        if not isinstance(item.get("text"), str):
            raise ValueError(f"{where} is a text item without a 'text' string: {_short(item)}.")
        return {"type": "text", "text": item["text"]}
    if kind == "image":
        if item.get("image") is None:
            raise ValueError(f"{where} is an image item without its 'image' (a PIL image, array or path).")
        return {"type": "image", "image": load_chat_image(item["image"], where)}
    raise ValueError(f"{where} has unknown content type {kind!r}; {_ITEM_HELP}.")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- images
def load_chat_image(image: Any, where: str = "image") -> Image.Image:
    """A PIL image, ``(H, W, 3|4)`` uint8 array or file path -> an RGB PIL image.

    Args:
        image: the image.
        where: how errors name it (e.g. ``"message 2 (user), item 0"``).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unreadable file, a video (4-D array, animated file), a 2-D or channel-first
            array, a non-uint8 array, an empty image, or an object that is not an image.
    """
    if isinstance(image, (str, Path)):
        image = _open_image_file(Path(image), where)
    elif isinstance(image, np.ndarray):
        image = _array_to_image(image, where)
    elif not isinstance(image, Image.Image):
        raise ValueError(
            f"{where}: a {type(image).__name__} is not an image; pass a PIL image, an (H, W, 3) uint8 "
            "array or a file path."
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ValueError(
            f"{where}: an animated image of {image.n_frames} frames is a video; chat takes still images: "
            "pass one frame (image.seek(k); image.convert('RGB'))."
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{where}: the image is empty ({image.width}x{image.height} pixels).")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _open_image_file(path: Path, where: str) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: image file {str(path)!r} does not exist (relative paths are read from {Path.cwd()}); "
            "check the path."
        )
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            opened.load()
            image = opened.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(
            f"{where}: cannot read {str(path)!r} as an image ({err}); pass a PNG / JPEG / GIF file, a PIL "
            "image or an (H, W, 3) uint8 array."
        ) from None
    if frames > 1:
        raise ValueError(
            f"{where}: {str(path)!r} is an animation of {frames} frames (a video); chat takes still images."
        )
    return image


def _array_to_image(array: np.ndarray, where: str) -> Image.Image:
    shape = tuple(array.shape)
    if array.ndim == 4:
        raise ValueError(
            f"{where}: an array of shape {shape} is a video (T, H, W, 3); chat takes images: pass one frame, "
            "e.g. video[0]."
        )
    if array.ndim == 2:
        raise ValueError(
            f"{where}: a 2-D array {shape} has no colour channels; pass (H, W, 3) uint8, e.g. "
            "np.stack([a] * 3, axis=-1), or a PIL image (Image.fromarray(a))."
        )
    if array.ndim != 3 or shape[-1] not in (3, 4):
        hint = " (channel-first? transpose it to (H, W, 3))" if array.ndim == 3 and shape[0] in (3, 4) else ""
        raise ValueError(f"{where}: an image array must be (H, W, 3) or (H, W, 4), got {shape}{hint}.")
    if array.dtype != np.uint8:
        raise ValueError(
            f"{where}: image arrays must be uint8 in [0, 255], got {array.dtype}; for floats in [0, 1] use "
            "(a * 255).round().astype(np.uint8)."
        )
    return Image.fromarray(np.ascontiguousarray(array), mode="RGBA" if shape[-1] == 4 else "RGB")


@torch.no_grad()
def encode_chat_images(messages: list[dict], processor, visual_tokenizer) -> list[dict]:
    """Encode every image of normalized ``messages`` to HBQ codes, in one batch.

    Images are resized and centre-cropped to the processor's (the model's default) size. Returns
    new messages whose image items also hold ``"codes"``: bits ``(1, H', W', C, M)`` uint8 (CPU).
    """
    images = [it["image"] for m in messages for it in m["content"] if it["type"] == "image"]
    if not images:
        return messages
    pixels = processor.preprocess_images(images)  # (N, 3, H, W) in [-1, 1]
    pixels = pixels.to(visual_tokenizer.device, visual_tokenizer.dtype)
    bits = visual_tokenizer.encode(pixels).bits.cpu()  # (N, 1, H', W', C, M)
    codes = iter(bits)
    return [
        {
            **m,
            "content": [{**it, "codes": next(codes)} if it["type"] == "image" else it for it in m["content"]],
        }
        for m in messages
    ]


# ----------------------------------------------------------------------------- layout
def chat_segments(
    messages: list[dict], eos_token_id: int | None, add_generation_prompt: bool = True
) -> list[TextSegment | VisualSegment]:
    """Segments of normalized ``messages`` in the training layout, every image a clean block.

    An image item's block holds its ``"codes"`` (None before :func:`encode_chat_images`: enough
    for the text form). With ``add_generation_prompt`` the new turn's ``"\\n" "Assistant: "`` follows.
    """
    indexed, codes = [], []
    for message in messages:
        items = []
        for item in message["content"]:
            if item["type"] == "image":
                items.append({"type": "image", "index": len(codes)})
                codes.append(item.get("codes"))
            else:
                items.append({"type": "text", "text": item["text"]})
        indexed.append({"role": message["role"], "content": items})
    segments = [
        replace(s, target=False, start_label=False) if isinstance(s, VisualSegment) else s
        for s in conversation_segments(indexed, codes, eos_token_id)
    ]
    if add_generation_prompt:
        segments += [TextSegment(CHAT_TURN_SEPARATOR), TextSegment(CHAT_ROLE_PREFIXES["assistant"])]
    return segments


def chat_text(messages: list[dict], tokenizer, add_generation_prompt: bool = True) -> str:
    """The text form of normalized ``messages``: every image is :data:`IMAGE_PLACEHOLDER`, the EOS
    after an assistant message is the tokenizer's EOS string (no BOS: the layout adds it)."""
    parts = []
    for segment in chat_segments(messages, tokenizer.eos_token_id, add_generation_prompt):
        if isinstance(segment, VisualSegment):
            parts.append(IMAGE_PLACEHOLDER)
        elif isinstance(segment.text, str):
            parts.append(segment.text)
        else:
            parts.append(tokenizer.decode(list(segment.text)))
    return "".join(parts)


def layout_chat(messages: list[dict], tokenizer, vocab, add_generation_prompt: bool = True) -> GRNBatch:
    """Encoded ``messages`` -> their one-row :class:`~unified_grn.collator.GRNBatch` (the collator's
    layout; no padding, every block clean)."""
    collator = GRNCollator(tokenizer, vocab, condition_drop_prob=0.0)
    segments = chat_segments(messages, tokenizer.eos_token_id, add_generation_prompt)
    return collator([GRNSample(segments, task="chat")])


def fit_to_context(
    messages: list[dict],
    num_positions: Callable[[list[dict]], int],
    max_positions: int,
    truncation: bool = True,
) -> list[dict]:
    """Drop the oldest whole turns until ``num_positions(messages) <= max_positions``.

    Args:
        messages: normalized messages.
        num_positions: the positions a list of messages takes (its laid-out length).
        max_positions: the backbone's ``max_position_embeddings``.
        truncation: drop turns (with a warning); False raises instead.

    Returns:
        ``messages`` or its kept tail (leading system messages kept).

    Raises:
        ValueError: truncation is off and the conversation is too long, or its last turn alone is.
    """
    needed = num_positions(messages)
    if needed <= max_positions:
        return messages
    if not truncation:
        raise ValueError(
            f"the conversation needs {needed} positions but the backbone has max_position_embeddings="
            f"{max_positions}; shorten it, or pass truncation=True to drop the oldest turns."
        )
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    starts = [i for i in range(head, len(messages)) if messages[i]["role"] == "user"]
    for start in starts[1:]:
        kept = messages[:head] + messages[start:]
        if num_positions(kept) <= max_positions:
            logger.warning(
                "the conversation needs %d positions, more than max_position_embeddings=%d: dropped its "
                "oldest %d message(s) (whole turns; system messages kept)",
                needed, max_positions, start - head,
            )  # fmt: skip
            return kept
    last = messages[:head] + messages[starts[-1] :] if starts else messages
    raise ValueError(
        f"the last user turn alone needs {num_positions(last)} positions (system messages included) but the "
        f"backbone has max_position_embeddings={max_positions}; shorten the message, send fewer images, or "
        "use a model with a longer context."
    )
