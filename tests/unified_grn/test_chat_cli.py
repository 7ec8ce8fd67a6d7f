"""``grn chat`` in the terminal: the loop and its commands on a scripted model, then a real one piped."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.chat_cli import ChatSession, load_image, run_terminal, save_image
from unified_grn.cli import main

RED = (220, 30, 30)


class ScriptedModel:
    """``chat`` draws a red square when the last message says "draw", else counts the images it sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict], dict]] = []

    def chat(self, messages, **kwargs):
        self.calls.append((messages, kwargs))
        text = " ".join(i["text"] for i in messages[-1]["content"] if i["type"] == "text")
        if "draw" in text:
            return {"role": "assistant", "content": ["here it is", Image.new("RGB", (16, 16), RED)]}
        if "fail" in text:
            raise ValueError("the prompt is too long")
        seen = sum(i["type"] == "image" for m in messages for i in m["content"])
        return {"role": "assistant", "content": [f"I see {seen} images"]}


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "blue.png"
    Image.new("RGB", (24, 20), (10, 20, 200)).save(path)
    return path


def _run(session: ChatSession, lines: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    assert run_terminal(session, io.StringIO("\n".join(lines) + "\n"), out, err) == 0
    return out.getvalue(), err.getvalue()


def test_piped_conversation_draws_attaches_and_saves(tmp_path, png):
    model = ScriptedModel()
    session = ChatSession(model, tmp_path / "out", seed=3, num_steps=2, max_new_tokens=None)
    lines = [
        "draw a red square",
        f"/image {png}",
        "what is in my picture?",
        "/save " + str(tmp_path / "log.json"),
    ]
    out, err = _run(session, [*lines, "/quit", "never read"])
    assert err == ""
    drawn = tmp_path / "out" / "image-0001.png"
    assert f"assistant: here it is\nassistant: [image] {drawn}\n" in out
    assert f"attached {png} (24x20) to the next message" in out
    assert "assistant: I see 2 images" in out  # the drawn one and the attached one
    assert "saved 4 messages to" in out and out.endswith("bye\n") and len(model.calls) == 2
    assert np.asarray(Image.open(drawn))[0, 0].tolist() == list(RED)
    messages, kwargs = model.calls[1]
    assert kwargs == {"seed": 3, "num_steps": 2}  # None values are left to the model's defaults
    assert [i["type"] for i in messages[-1]["content"]] == ["image", "text"]  # the attachment first
    assert isinstance(messages[-1]["content"][0]["image"], Image.Image)
    assert messages[1]["content"][1]["image"].size == (16, 16)  # the drawn image re-enters as PIL
    saved = json.loads((tmp_path / "log.json").read_text())["messages"]
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[1]["content"] == [
        {"type": "text", "text": "here it is"},
        {"type": "image", "image": "log-0001.png"},
    ]
    attached = Image.open(tmp_path / saved[2]["content"][0]["image"])
    assert attached.size == (24, 20) and np.asarray(attached)[0, 0].tolist() == [10, 20, 200]


def test_bad_input_prints_one_error_line_and_the_loop_goes_on(tmp_path, png):
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    model = ScriptedModel()
    lines = [
        f"/image {tmp_path / 'missing.png'}",
        f"/image {junk}",
        "/image",
        "/save",
        "/teleport now",
        f"/save {tmp_path}",  # a folder, not a file
        "please fail",
        "hello",
    ]
    out, err = _run(ChatSession(model, tmp_path / "out"), lines)
    errors = err.splitlines()
    assert len(errors) == 7 and all(e.startswith("error: ") for e in errors)
    assert "no such image file" in errors[0] and "missing.png" in errors[0]
    assert "cannot read" in errors[1] and "as an image" in errors[1]
    assert errors[2:4] == ["error: usage: /image PATH", "error: usage: /save FILE"]
    assert "unknown command '/teleport'" in errors[4] and "cannot save to" in errors[5]
    assert errors[6] == "error: the prompt is too long"
    assert "assistant: I see 0 images" in out and out.endswith("bye\n")  # EOF ends the loop
    assert len(model.calls[-1][0]) == 1  # the failed turn did not join the history


def test_reset_forgets_history_and_attachments(tmp_path, png):
    model = ScriptedModel()
    session = ChatSession(model, tmp_path)
    out, _ = _run(session, ["draw it", f"/image {png}", "/reset", "how many?"])
    assert "conversation cleared" in out and "assistant: I see 0 images" in out
    assert len(model.calls[-1][0]) == 1


def test_ctrl_c_leaves_the_loop_cleanly(tmp_path):
    def typed():
        yield "hello"
        raise KeyboardInterrupt

    out, err = io.StringIO(), io.StringIO()
    assert run_terminal(ChatSession(ScriptedModel(), tmp_path), typed(), out, err, prompt="you> ") == 0
    assert out.getvalue().endswith("you> assistant: I see 0 images\nyou> \nbye\n") and err.getvalue() == ""


def test_save_image_takes_the_next_free_number(tmp_path):
    (tmp_path / "image-0007.png").write_bytes(b"")
    (tmp_path / "image-notes.png").write_bytes(b"")
    path = save_image(Image.new("RGB", (4, 4)), tmp_path)
    assert path == tmp_path / "image-0008.png" and load_image(path).size == (4, 4)


def test_cli_chat_without_a_model_folder_is_a_usage_error(tmp_path, capsys, monkeypatch):
    assert main(["chat", "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("grn chat: error: ") and "not a GRN model folder" in err and len(err.splitlines()) == 1
    )
    assert main(["chat", "--model", str(tmp_path), "--num-steps", "0"]) == 2
    assert "--num-steps must be >= 1" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no checkpoints/grn-shapes here
    assert main(["chat"]) == 2
    assert "no --model given and checkpoints/grn-shapes holds no model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real model, piped


def _drawing_model_folder(path: Path) -> Path:
    """A saved GRN-tiny whose text head always picks ``<|image_start|>``: every turn draws.

    Embedding dimension 0 is made huge for every text id, so the last hidden state always points
    along it, and only the ``<|image_start|>`` row of ``lm_head`` reads that dimension.
    """
    torch.manual_seed(0)
    model = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny")).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 100.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[model.vocab.image_start_id, 0] = 10.0
    model.save_pretrained(path)
    return path


@pytest.mark.slow  # 20-25 s, most of it the subprocess importing torch and transformers
def test_grn_chat_with_piped_stdin(tmp_path, png):
    folder = _drawing_model_folder(tmp_path / "model")
    script = f"draw a red circle\n/image {png}\nand what is this?\n/save {tmp_path / 'chat.json'}\n/quit\n"
    command = [sys.executable, "-m", "unified_grn.cli", "chat", "--model", str(folder), "--out", "drawn"]
    options = ["--seed", "0", "--num-steps", "2", "--max-new-tokens", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*command, *options], input=script, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"chatting with {folder}; drawn images go to drawn"
    assert lines[1].startswith("commands: /image PATH") and lines[-1] == "bye"
    assert lines[2:-1] == [
        "assistant: [image] drawn/image-0001.png",
        f"attached {png} (24x20) to the next message",
        "assistant: [image] drawn/image-0002.png",
        f"saved 4 messages to {tmp_path / 'chat.json'}",
    ]
    for name in ("image-0001.png", "image-0002.png"):
        assert Image.open(tmp_path / "drawn" / name).size == (32, 32)  # GRN-tiny's default image size
    saved = json.loads((tmp_path / "chat.json").read_text())["messages"]
    images = [i["image"] for m in saved for i in m["content"] if i["type"] == "image"]
    assert images == ["chat-0001.png", "chat-0002.png", "chat-0003.png"]  # drawn, attached, drawn
    assert Image.open(tmp_path / "chat-0002.png").size == (24, 20)
