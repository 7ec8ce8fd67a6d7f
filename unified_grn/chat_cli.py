"""``grn chat``: talk to a GRN model in the terminal (or, with ``--web``, in a browser).

The terminal loop reads one line at a time, so it works the same typed or piped::

    printf 'draw a red circle\\n/image cat.png\\nhow many cats?\\n/quit\\n' | grn chat --model DIR

A line is a message to the model, or a command:

=================  ===================================================================
``/image PATH``    attach an image to the next message (several may be attached)
``/reset``         forget the conversation (and any attached images)
``/save FILE``     write the conversation as JSON, its images as PNGs beside ``FILE``
``/quit``          leave (so does end of input)
=================  ===================================================================

Every image the model draws is written to ``--out`` (default ``outputs/chat/``) as
``image-NNNN.png`` (the next free number) and its path is printed. Bad input (a missing or
unreadable image, an unknown command, an unwritable file) prints one ``error: ...`` line on
stderr and the loop goes on.

The conversation is kept in the model's message format (``model.chat(messages, **kwargs)``,
``unified_grn.chat``): ``{"role", "content": [{"type": "text", "text"} | {"type": "image",
"image": PIL}]}``; an attached image comes before the text of its message, and a drawn image
re-enters the context as a PIL image. ``/save`` writes the ``conversations`` source format
(``unified_grn.data.sources``): image items name PNG files relative to the JSON file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_OUT_DIR",
    "ChatSession",
    "add_chat_arguments",
    "load_chat_model",
    "load_image",
    "run_chat",
    "run_terminal",
    "save_image",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path("checkpoints/grn-shapes")
DEFAULT_OUT_DIR = Path("outputs/chat")
HELP = "commands: /image PATH (attach to the next message), /reset, /save FILE, /quit"


def load_image(path: str | Path) -> Image.Image:
    """An RGB copy of the image at ``path``; ``ValueError`` with a one-line reason if it cannot be read."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"no such image file: {str(path)!r}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read {str(path)!r} as an image ({type(err).__name__})") from None


def save_image(image: Image.Image, out_dir: str | Path, stem: str = "image") -> Path:
    """Write ``image`` as ``out_dir/{stem}-NNNN.png`` with the next free number; return the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = set()
    for p in out_dir.glob(f"{stem}-*.png"):
        number = p.stem[len(stem) + 1 :]
        if number.isdigit():
            taken.add(int(number))
    index = max(taken, default=0) + 1
    path = out_dir / f"{stem}-{index:04d}.png"
    image.save(path)
    return path


def _text_item(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image_item(image: Image.Image) -> dict[str, Any]:
    return {"type": "image", "image": image}


class ChatSession:
    """One conversation with ``model``: the history, the images attached to the next message.

    Args:
        model: anything with ``chat(messages, **kwargs) -> {"role": "assistant", "content": [str |
            PIL.Image, ...]}`` (a GRN model).
        out_dir: where drawn images are written.
        generation_kwargs: passed to every ``model.chat`` call (``None`` values are left out, so the
            model's own defaults apply).
    """

    def __init__(self, model: Any, out_dir: str | Path = DEFAULT_OUT_DIR, **generation_kwargs: Any) -> None:
        self.model = model
        self.out_dir = Path(out_dir)
        self.generation_kwargs = {k: v for k, v in generation_kwargs.items() if v is not None}
        self.messages: list[dict[str, Any]] = []
        self.pending: list[Image.Image] = []

    def attach(self, path: str | Path) -> Image.Image:
        """Read the image at ``path`` and attach it to the next message (``ValueError`` if unreadable)."""
        image = load_image(path)
        self.pending.append(image)
        return image

    def reset(self) -> None:
        """Forget the conversation and any attached images."""
        self.messages.clear()
        self.pending.clear()

    def send(self, text: str) -> list[str | Path]:
        """Send ``text`` with the attached images; return the reply with drawn images as saved paths.

        The user message and the reply join the history only when ``model.chat`` succeeds.
        """
        content = [_image_item(image) for image in self.pending]
        if text:
            content.append(_text_item(text))
        if not content:
            raise ValueError("nothing to send: type a message or attach an image with /image PATH")
        user = {"role": "user", "content": content}
        reply = self.model.chat([*self.messages, user], **self.generation_kwargs)
        items, shown = [], []
        for part in reply.get("content") or []:
            if isinstance(part, Image.Image):
                items.append(_image_item(part))
                shown.append(save_image(part, self.out_dir))
            elif isinstance(part, str):
                items.append(_text_item(part))
                shown.append(part)
            else:
                logger.warning("ignoring a reply item of type %s", type(part).__name__)
        self.messages += [user, {"role": "assistant", "content": items}]
        self.pending = []
        return shown

    def save(self, file: str | Path) -> Path:
        """Write the history to ``file`` (JSON) and its images beside it as ``{stem}-NNNN.png`` (in order).

        A ``.jsonl`` file gets one line (a ``conversations`` data source reads it as is).
        """
        file = Path(file).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True)
        messages, count = [], 0
        for message in self.messages:
            content = []
            for item in message["content"]:
                if item["type"] == "image":
                    count += 1
                    name = f"{file.stem}-{count:04d}.png"  # saving again rewrites the same files
                    item["image"].save(file.parent / name)
                    item = {"type": "image", "image": name}
                content.append(item)
            messages.append({"role": message["role"], "content": content})
        indent = None if file.suffix == ".jsonl" else 2
        file.write_text(json.dumps({"messages": messages}, indent=indent) + "\n")
        return file


# ----------------------------------------------------------------------------- terminal loop


def _command(session: ChatSession, line: str, out: TextIO) -> bool:
    """Run the ``/command`` in ``line``; return False to leave the loop. Raises ``ValueError``."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return False
    if name in ("/image", "/save") and not arg:
        raise ValueError(f"usage: {name} {'PATH' if name == '/image' else 'FILE'}")
    if name == "/image":
        image = session.attach(arg)
        out.write(f"attached {arg} ({image.width}x{image.height}) to the next message\n")
    elif name == "/reset":
        session.reset()
        out.write("conversation cleared\n")
    elif name == "/save":
        try:
            path = session.save(arg)
        except OSError as err:
            raise ValueError(f"cannot save to {arg!r}: {err.strerror or err}") from None
        out.write(f"saved {len(session.messages)} messages to {path}\n")
    elif name == "/help":
        out.write(HELP + "\n")
    else:
        raise ValueError(f"unknown command {name!r}; {HELP}")
    return True


def _reply(session: ChatSession, text: str, out: TextIO) -> None:
    shown = [part for part in session.send(text) if isinstance(part, Path) or part.strip()]
    for part in shown:
        out.write(f"assistant: [image] {part}\n" if isinstance(part, Path) else f"assistant: {part}\n")
    if not shown:
        out.write("assistant: (no reply)\n")


def _loop(session: ChatSession, lines: Iterable[str], out: TextIO, err: TextIO, prompt: str) -> None:
    iterator = iter(lines)
    while True:
        out.write(prompt)
        out.flush()
        line = next(iterator, None)
        if line is None:
            return
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not _command(session, line, out):
                    return
            else:
                _reply(session, line, out)
        except ValueError as error:
            err.write(f"error: {error}\n")
            err.flush()
        out.flush()


def run_terminal(
    session: ChatSession,
    lines: Iterable[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    prompt: str = "",
) -> int:
    """The chat loop over ``lines`` (e.g. ``sys.stdin``) until ``/quit``, their end or Ctrl-C; returns 0.

    ``out`` / ``err`` default to ``sys.stdout`` / ``sys.stderr``; ``prompt`` is written before each
    line is read (``"you> "`` on a terminal, nothing when piped).
    """
    out, err = out or sys.stdout, err or sys.stderr
    out.write(HELP + "\n")
    try:
        _loop(session, lines, out, err, prompt)
    except KeyboardInterrupt:
        out.write("\n")
    out.write("bye\n")
    return 0


# ----------------------------------------------------------------------------- command line


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``grn chat`` options."""
    parser.add_argument(
        "--model", default=None, help=f"GRN model folder (default {DEFAULT_MODEL_DIR} when it exists)"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT_DIR), help=f"drawn images (default {DEFAULT_OUT_DIR})"
    )
    parser.add_argument("--seed", type=int, default=None, help="sampling seed of every turn (default random)")
    parser.add_argument("--num-steps", type=int, default=None, help="refinement steps per image")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="text tokens per reply")
    parser.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    parser.add_argument("--web", action="store_true", help="serve a Gradio web UI instead of the terminal")
    parser.add_argument("--host", default="127.0.0.1", help="--web: address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="--web: port (default 7860)")


def load_chat_model(path: str | Path | None, device: str | None = None) -> Any:
    """Load the GRN model folder ``path`` (default ``checkpoints/grn-shapes``) for chatting, in eval mode.

    Raises ``FileNotFoundError`` with a one-line reason when there is no model folder.
    """
    import torch

    from unified_grn import AutoModelForGRN

    if path is None:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise FileNotFoundError(f"no --model given and {DEFAULT_MODEL_DIR} holds no model")
        path = DEFAULT_MODEL_DIR
    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a GRN model folder (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    logger.info("loading %s on %s", path, device)
    return AutoModelForGRN.from_pretrained(str(path)).to(device).eval()


def run_chat(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """``grn chat``: load the model, then run the terminal loop or (``--web``) the web UI."""
    for name in ("num_steps", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.web and importlib.util.find_spec("gradio") is None:  # before the model takes its time to load
        raise ValueError("--web needs gradio: pip install 'unified-grn[web]'")
    model = load_chat_model(args.model, args.device)
    kwargs = dict(seed=args.seed, num_steps=args.num_steps, max_new_tokens=args.max_new_tokens)
    if args.web:
        from unified_grn.chat_web import launch

        launch(model, host=args.host, port=args.port, out_dir=args.out, **kwargs)
        return 0
    stdin = stdin or sys.stdin
    session = ChatSession(model, args.out, **kwargs)
    sys.stdout.write(f"chatting with {args.model or DEFAULT_MODEL_DIR}; drawn images go to {args.out}\n")
    return run_terminal(session, stdin, prompt="you> " if stdin.isatty() else "")
