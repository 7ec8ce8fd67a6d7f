"""``grn chat --web``: a Gradio chat UI for a GRN model, served on localhost.

One page: a multi-turn chatbot (drawn images shown inline), a multimodal textbox (text and image
uploads), a seed and a refinement-steps control, and a clear-history button. Written for the
Gradio 6 API (checked on 6.31): ``gr.Chatbot`` holds only the messages format (there is no
``type=`` argument any more) and hands its history to event functions *normalized*, every
``content`` a list of ``{"type": "text", "text"}`` / ``{"type": "file", "file": {"path", ...}}``;
it accepts back the short forms too (a string, a ``{"path"}`` dict, or a list of them).

The conversation lives in the chatbot alone. Each turn converts its history to the model's
message format with :func:`history_to_messages` (images re-read from their files), calls
``model.chat``, and appends the reply with :func:`reply_to_history` (drawn images saved to
``out_dir`` as ``image-NNNN.png``, shown by path). These conversions and :func:`user_to_history`
are plain functions with no Gradio import, so they are unit tested without a browser.

Nothing reaches the network: analytics are off (``GRADIO_ANALYTICS_ENABLED=False``, set before
Gradio is imported, and ``Blocks(analytics_enabled=False)``), no share link, no server-side
rendering (which would start Node), no MCP server, no run history, and the default theme's fonts are local.
"""

from __future__ import annotations

import inspect
import logging
import mimetypes
import os
from pathlib import Path
from typing import Any

from PIL import Image

from unified_grn.chat_cli import DEFAULT_OUT_DIR, load_image, save_image

__all__ = ["build_demo", "history_to_messages", "launch", "reply_to_history", "user_to_history"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
NO_REPLY = "(no reply)"  # shown for an empty reply; read back as the empty text the model produced
DEFAULT_NUM_STEPS = 50  # GRNGenerationConfig's default, used when the model has none


def _offline_gradio():
    """Import Gradio with its analytics (the only call home it makes unasked) switched off."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    return gr


# ----------------------------------------------------------------------------- history <-> messages


def _is_image_file(path: str, mime_type: str | None = None) -> bool:
    mime_type = mime_type or mimetypes.guess_type(path)[0] or ""
    return mime_type.startswith("image/") or path.lower().endswith(IMAGE_SUFFIXES)


def _gradio_items(content: Any) -> list[tuple[str, str, str | None]]:
    """A Gradio message ``content`` (any of its forms) as ``[("text", text, None) | ("file", path, mime)]``."""
    parts = content if isinstance(content, (list, tuple)) else [content]
    items = []
    for part in parts:
        if isinstance(part, str):
            items.append(("text", part, None))
        elif isinstance(part, dict) and part.get("type") == "text":
            items.append(("text", part.get("text") or "", None))
        elif isinstance(part, dict) and isinstance(part.get("file"), dict):  # normalized file message
            items.append(("file", part["file"]["path"], part["file"].get("mime_type")))
        elif isinstance(part, dict) and "path" in part:  # short form {"path": ...}
            items.append(("file", part["path"], part.get("mime_type")))
        elif part is not None:
            logger.warning("skipping a chat item the model cannot read: %s", type(part).__name__)
    return items


def history_to_messages(history: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The chatbot's history as ``model.chat`` messages.

    Text becomes ``{"type": "text", "text"}``, an image file ``{"type": "image", "image": PIL}``
    (other files are skipped with a warning), blank text is dropped, and consecutive messages of
    one role are merged into one (a turn whose reply failed leaves two user messages in a row).
    An assistant message that is just :data:`NO_REPLY` becomes the empty reply ``[""]``.
    """
    messages: list[dict[str, Any]] = []
    for message in history or []:
        if message["role"] == "assistant" and _gradio_items(message.get("content")) == [
            ("text", NO_REPLY, None)
        ]:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": ""}]})
            continue
        content = []
        for kind, value, mime_type in _gradio_items(message.get("content")):
            if kind == "text" and value.strip():
                content.append({"type": "text", "text": value})
            elif kind == "file" and _is_image_file(value, mime_type):
                content.append({"type": "image", "image": load_image(value)})
            elif kind == "file":
                logger.warning("skipping the non-image file %s", value)
        if not content:
            continue
        if messages and messages[-1]["role"] == message["role"]:
            messages[-1]["content"].extend(content)
        else:
            messages.append({"role": message["role"], "content": content})
    return messages


def user_to_history(value: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """A multimodal textbox value ``{"text", "files"}`` as a chatbot user message (images first).

    ``None`` when there is nothing to send.
    """
    if isinstance(value, str):
        value = {"text": value, "files": []}
    value = value or {}
    content: list[Any] = [{"path": str(f)} for f in value.get("files") or []]
    text = (value.get("text") or "").strip()
    if text:
        content.append(text)
    return {"role": "user", "content": content} if content else None


def reply_to_history(reply: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """``model.chat``'s reply as a chatbot message: text kept, images saved to ``out_dir`` and shown by path."""
    content: list[Any] = []
    for part in reply.get("content") or []:
        if isinstance(part, Image.Image):
            content.append({"path": str(save_image(part, out_dir)), "alt_text": "generated image"})
        elif isinstance(part, str):
            if part.strip():
                content.append(part)
        else:
            logger.warning("ignoring a reply item of type %s", type(part).__name__)
    return {"role": "assistant", "content": content or [NO_REPLY]}


# ----------------------------------------------------------------------------- the UI


def _seed(value: float | None) -> int | None:
    """The seed control: a negative or empty value means a fresh random seed each turn."""
    return None if value is None or value < 0 else int(value)


def _default_steps(model: Any, num_steps: int | None) -> int:
    if num_steps is not None:
        return num_steps
    config = getattr(model, "generation_config", None)
    return int(getattr(config, "num_steps", None) or DEFAULT_NUM_STEPS)


def build_demo(
    model: Any,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    *,
    seed: int | None = None,
    num_steps: int | None = None,
    max_new_tokens: int | None = None,
    **chat_kwargs: Any,
):
    """The Gradio ``Blocks`` app chatting with ``model`` (anything with ``chat(messages, **kwargs)``).

    ``seed`` and ``num_steps`` are the controls' starting values (seed ``-1``: random);
    ``max_new_tokens`` (``None``: the model's default) and ``chat_kwargs`` (e.g. ``temperature``,
    ``top_k``, ``logits_processor``) go to every ``model.chat`` call. Elements carry stable
    ``elem_id`` s (``chatbot``, ``prompt``, ``seed``, ``steps``, ``clear``) for browser tests.
    """
    gr = _offline_gradio()
    steps = _default_steps(model, num_steps)

    def add_user(history, value):
        message = user_to_history(value)
        history = list(history or []) + ([message] if message else [])
        return history, gr.MultimodalTextbox(value=None, interactive=False)

    def respond(history, seed_value, steps_value):
        messages = history_to_messages(history)
        if not messages or messages[-1]["role"] != "user":
            return history
        kwargs = dict(seed=_seed(seed_value), num_steps=int(steps_value), max_new_tokens=max_new_tokens)
        kwargs = {**chat_kwargs, **{k: v for k, v in kwargs.items() if v is not None}}
        try:
            reply = model.chat(messages, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from None
        return [*history, reply_to_history(reply, out_dir)]

    with gr.Blocks(title="GRN chat", analytics_enabled=False) as demo:
        gr.Markdown("## GRN chat\nAsk for a picture, attach one and ask about it, or just talk.")
        chatbot = gr.Chatbot(elem_id="chatbot", label="conversation", height=480, feedback_options=None)
        box = gr.MultimodalTextbox(
            elem_id="prompt",
            file_types=["image"],
            file_count="multiple",
            sources=["upload"],
            placeholder="Type a message, or attach an image with the clip",
            show_label=False,
        )
        with gr.Row():
            seed_box = gr.Number(
                value=-1 if seed is None else seed, precision=0, label="seed (-1: random)", elem_id="seed"
            )
            steps_box = gr.Slider(
                1, max(100, steps), value=steps, step=1, label="refinement steps", elem_id="steps"
            )
            clear = gr.Button("Clear history", elem_id="clear", variant="secondary")
        sent = box.submit(add_user, [chatbot, box], [chatbot, box], queue=False)
        answered = sent.then(respond, [chatbot, seed_box, steps_box], chatbot)
        answered.then(lambda: gr.MultimodalTextbox(interactive=True), None, box)
        clear.click(lambda: ([], None), None, [chatbot, box], queue=False)
    return demo


def launch(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 7860,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    *,
    block: bool = True,
    **generation_kwargs: Any,
):
    """Serve :func:`build_demo` on ``host:port`` and return the app.

    ``block=True`` (the CLI) returns only after Ctrl-C; with ``block=False`` the server runs in a
    background thread: stop it with ``demo.close()``. ``generation_kwargs``: ``seed``,
    ``num_steps``, ``max_new_tokens`` and any other ``model.chat`` argument, for :func:`build_demo`.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    demo = build_demo(model, out_dir, **generation_kwargs)
    demo.queue(default_concurrency_limit=1)  # one model, one turn at a time
    options = dict(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        allowed_paths=[str(Path(out_dir).resolve())],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    if "run_history" in inspect.signature(demo.launch).parameters:  # newer 6.x: runs may go to an HF bucket
        options["run_history"] = False
    demo.launch(**options)
    return demo
