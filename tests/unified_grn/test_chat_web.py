"""``grn chat --web``: the Gradio history <-> model message conversions, and the UI in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and ``selenium``; it is skipped, with the reason, when one is missing.
Selenium Manager is never used (the driver path is given), so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unified_grn.chat_web import history_to_messages, reply_to_history, user_to_history

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --disable-dev-shm-usage --window-size=1200,1000"
).split()


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "green.png"
    Image.new("RGB", (12, 10), (0, 200, 0)).save(path)
    return path


# ----------------------------------------------------------------------------- conversions


def test_user_to_history_puts_images_first_and_drops_empty_input(png):
    assert user_to_history({"text": "  what is this? ", "files": [str(png)]}) == {
        "role": "user",
        "content": [{"path": str(png)}, "what is this?"],
    }
    assert user_to_history("hi") == {"role": "user", "content": ["hi"]}
    assert user_to_history({"text": "  ", "files": []}) is None and user_to_history(None) is None


def test_history_to_messages_reads_normalized_and_short_forms(png, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not for the model")
    history = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(png), "mime_type": "image/png"}}]},
        {"role": "user", "content": [{"type": "text", "text": "what colour?"}], "metadata": None},
        {"role": "assistant", "content": "green"},
        {"role": "user", "content": [{"path": str(notes)}, {"type": "text", "text": " "}]},  # nothing left
        {"role": "user", "content": ["draw it", {"path": str(png)}]},
    ]
    messages = history_to_messages(history)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    first = messages[0]["content"]  # the two user messages in a row are merged
    assert [i["type"] for i in first] == ["image", "text"] and first[1]["text"] == "what colour?"
    assert isinstance(first[0]["image"], Image.Image) and first[0]["image"].size == (12, 10)
    assert messages[1]["content"] == [{"type": "text", "text": "green"}]
    assert [i["type"] for i in messages[2]["content"]] == ["text", "image"]
    assert history_to_messages(None) == [] and history_to_messages([]) == []


def test_reply_to_history_saves_images_and_keeps_text(tmp_path):
    reply = {"role": "assistant", "content": ["a square:", Image.new("RGB", (8, 8), (255, 0, 0)), "  "]}
    message = reply_to_history(reply, tmp_path / "out")
    assert message["role"] == "assistant" and message["content"][0] == "a square:"
    assert len(message["content"]) == 2 and message["content"][1]["path"].endswith("image-0001.png")
    assert np.asarray(Image.open(message["content"][1]["path"]))[0, 0].tolist() == [255, 0, 0]
    assert reply_to_history({"role": "assistant", "content": [""]}, tmp_path)["content"] == ["(no reply)"]
    # the round trip back to the model reads the saved image
    again = history_to_messages([message])[0]["content"]
    assert [i["type"] for i in again] == ["text", "image"] and again[1]["image"].size == (8, 8)


# ----------------------------------------------------------------------------- the app's event functions


class EchoModel:
    """``chat`` records its arguments and replies with text and a blue image (or fails on "fail")."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict], dict]] = []

    def chat(self, messages, **kwargs):
        self.calls.append((messages, kwargs))
        if "fail" in messages[-1]["content"][-1].get("text", ""):
            raise ValueError("the conversation is too long")
        return {"role": "assistant", "content": ["here:", Image.new("RGB", (8, 8), (0, 0, 255))]}


def _event_functions(demo) -> dict:
    return {getattr(f.fn, "__name__", ""): f.fn for f in demo.fns.values()}


def test_app_turn_converts_calls_the_model_and_shows_the_reply(tmp_path, png):
    pytest.importorskip("gradio")
    from unified_grn.chat_web import build_demo

    model = EchoModel()
    demo = build_demo(model, tmp_path / "out", num_steps=3, max_new_tokens=5, top_k=2)
    events = _event_functions(demo)
    history, _ = events["add_user"]([], {"text": "draw a circle", "files": [str(png)]})
    history = events["respond"](history, -1, 3.0)
    assert model.calls[0][1] == {"num_steps": 3, "max_new_tokens": 5, "top_k": 2}  # seed -1: none given
    assert [i["type"] for i in model.calls[0][0][0]["content"]] == ["image", "text"]
    reply = history[-1]
    assert reply["role"] == "assistant" and reply["content"][0] == "here:"
    assert Path(reply["content"][1]["path"]) == tmp_path / "out" / "image-0001.png"
    history, _ = events["add_user"](history, {"text": "please fail", "files": []})
    import gradio as gr

    with pytest.raises(gr.Error, match="too long"):
        events["respond"](history, 7, 2)
    assert model.calls[-1][1]["seed"] == 7 and len(model.calls[-1][0]) == 3


# ----------------------------------------------------------------------------- headless Chromium


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


class DrawWhenAsked:
    """A ``logits_processor`` that makes the untrained GRN-tiny behave in the browser test.

    A turn whose user text says "draw" starts with ``<|image_start|>`` (the model then really
    refines and decodes an image) and ends after it; any other turn is text only, at least 4 of the
    model's own tokens. It goes to ``model.chat`` like any decoding option (``build_demo(...,
    logits_processor=[...])``); the UI has no testing hook.
    """

    def __init__(self, model) -> None:
        tokenizer = model.text_tokenizer
        self.tokenizer, self.start, self.eos = tokenizer, model.vocab.image_start_id, tokenizer.eos_token_id
        self.prefix = tokenizer("Assistant: ", add_special_tokens=False)["input_ids"]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ids, n = input_ids[0].tolist(), len(self.prefix)
        at = max(i for i in range(len(ids) - n + 1) if ids[i : i + n] == self.prefix)
        reply = ids[at + n :]
        user = self.tokenizer.decode(ids[:at], skip_special_tokens=True).rpartition("User: ")[2]
        scores = scores.clone()
        if self.start in reply or "draw" in user:
            forced = self.eos if self.start in reply else self.start
            scores[:] = float("-inf")
            scores[0, forced] = 0.0
        else:
            scores[0, self.start] = float("-inf")
            if len(reply) < 4:
                scores[0, self.eos] = float("-inf")
        return scores


@pytest.fixture
def server(tmp_path):
    """The web UI for a GRN-tiny model on a free localhost port, in a background thread."""
    from unified_grn import GRNConfig, GRNForConditionalGeneration
    from unified_grn.chat_web import launch

    torch.manual_seed(0)
    model = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny")).eval()
    port = _free_port()
    demo = launch(
        model,
        port=port,
        out_dir=tmp_path / "drawn",
        block=False,
        seed=0,
        num_steps=2,
        max_new_tokens=8,
        logits_processor=[DrawWhenAsked(model)],
    )
    yield f"http://127.0.0.1:{port}/", tmp_path / "drawn"
    demo.close()


def _send(driver, wait, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait.until(lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#prompt textarea")), None))
    wait.until(lambda d: box.is_enabled())  # the box is locked while a reply is on its way
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def _bot_messages(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, '#chatbot [data-testid="bot"]')


def _loaded(driver, image) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))


@pytest.mark.slow  # about 20 s: Gradio's start-up, Chromium's, two turns
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas 3 deprecations inside Gradio
def test_browser_draws_then_answers_a_follow_up(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, drawn = server
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(url)
    _send(browser, wait, "draw a red circle")
    image = wait.until(
        lambda d: next((i for i in d.find_elements(By.CSS_SELECTOR, "#chatbot img") if _loaded(d, i)), None)
    )
    assert "image-0001.png" in image.get_attribute("src") and (drawn / "image-0001.png").is_file()
    _send(browser, wait, "what colour is the circle?")
    answer = wait.until(lambda d: len(_bot_messages(d)) >= 2 and _bot_messages(d)[-1].text.strip())
    assert answer and len(browser.find_elements(By.CSS_SELECTOR, "#chatbot img")) == 1  # text, no new image
    users = browser.find_elements(By.CSS_SELECTOR, '#chatbot [data-testid="user"]')
    assert [u.text for u in users] == ["draw a red circle", "what colour is the circle?"]
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and [u for u in fetched if not u.startswith((url, "data:", "blob:"))] == []  # all local
    browser.find_element(By.ID, "clear").click()
    wait.until(lambda d: not _bot_messages(d))
