"""model.chat on GRN-tiny: the training layout, cache == full pass, the image branch, seeds, bad input.

A random model never decides to draw, so the image branch is forced by a test logits processor
(``Script``) that makes the text head emit a given sequence and records the scores it saw.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import build_tiny_grn

import unified_grn.chat as chat_module
from unified_grn import AutoModelForGRN, GRNCollator, GRNConfig, build_chat_context
from unified_grn.chat_format import load_chat_image
from unified_grn.collator import GRNSample
from unified_grn.data.examples import conversation_segments
from unified_grn.text_tokenizer import train_bpe_tokenizer

FAST = dict(num_steps=3, max_new_tokens=8)


@pytest.fixture(scope="module")
def model():
    return build_tiny_grn()


@pytest.fixture(scope="module")
def bpe_model(model):
    """GRN-tiny with a BPE text tokenizer: merges (" hi", "User") make segment boundaries matter."""
    corpus = ["User: what colour? Assistant: red", "System: be brief", "draw it again ok hi"] * 20
    tokenizer = train_bpe_tokenizer(corpus, vocab_size=300)
    torch.manual_seed(0)
    config = GRNConfig.from_preset("GRN-tiny", base_vocab_size=len(tokenizer))
    grn = AutoModelForGRN.from_config(config, attn_implementation="sdpa").eval()
    grn.text_tokenizer, grn.visual_tokenizer = tokenizer, model.visual_tokenizer
    return grn


class Script:
    """Logits processor: force ``tokens`` one per step (then leave the scores alone); record scores."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens, self.seen = list(tokens), []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.seen.append(scores.clone())
        if len(self.seen) > len(self.tokens):
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[len(self.seen) - 1]] = 0.0
        return forced


def ids(model, text: str) -> list[int]:
    return model.text_tokenizer(text, add_special_tokens=False)["input_ids"]


def picture(seed: int, size=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def history() -> list[dict]:
    """A conversation with a user image, a text reply, an image reply and a new question."""
    drawn = Image.fromarray(picture(2, (32, 32)))
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "image", "image": picture(1)}, "what colour?"]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        {"role": "user", "content": "draw it"},
        {"role": "assistant", "content": [drawn]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]


def training_row(model, messages: list[dict], bits: dict[int, torch.Tensor] | None = None):
    """The collator's training row of ``messages`` (images encoded at the model's default size,
    or the given bits per image index) and a mask of its positions outside target blocks."""
    images, indexed = [], []
    for m in messages:
        content = [m["content"]] if isinstance(m["content"], str) else m["content"]
        items = []
        for item in content:
            if isinstance(item, str) or (isinstance(item, dict) and item["type"] == "text"):
                items.append({"type": "text", "text": item if isinstance(item, str) else item["text"]})
            else:
                image = item["image"] if isinstance(item, dict) else item
                items.append({"type": "image", "index": len(images)})
                images.append(load_chat_image(image))
        indexed.append({"role": m["role"], "content": items})
    pixels = model.processor.preprocess_images(images)
    codes = list(model.visual_tokenizer.encode(pixels).bits)  # (1, H', W', C, M) each
    for k, b in (bits or {}).items():
        codes[k] = b
    segments = conversation_segments(indexed, codes, model.text_tokenizer.eos_token_id)
    batch = GRNCollator.from_model(model, condition_drop_prob=0.0)([GRNSample(segments, "chat")])
    target_block = torch.cat([torch.tensor([False]), batch.block_is_target])[batch.block_ids[0]]  # (L,)
    return batch, ~target_block


# ----------------------------------------------------------------------------- format and layout
def test_text_form_is_the_training_format(model):
    processor = model.processor
    text = processor.apply_chat_template(history())
    assert text == (
        "System: be brief\nUser: <|image|>what colour?\nAssistant: red<|eos|>\nUser: draw it\n"
        "Assistant: <|image|><|eos|>\nUser: again\nAssistant: "
    )
    short = [{"role": "user", "content": "hi"}]
    assert processor.apply_chat_template(short, add_generation_prompt=False) == "User: hi"
    with pytest.raises(ValueError, match="pass model="):
        processor.apply_chat_template(short, tokenize=True)


@pytest.mark.parametrize("text_tokenizer", ["byte", "bpe"])
def test_context_equals_the_collator_training_row(model, bpe_model, text_tokenizer):
    """The ids chat runs == the training row of the same conversation, without its target blocks."""
    model = bpe_model if text_tokenizer == "bpe" else model
    joint, apart = ids(model, "User: hi"), ids(model, "User: ") + ids(model, "hi")
    assert (joint != apart) == (text_tokenizer == "bpe")  # BPE: the segments must be tokenized apart
    messages = history()
    context = model.processor.apply_chat_template(messages, tokenize=True, model=model)
    reply = {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    train, seen = training_row(model, [*messages, reply])
    n = context.input_ids.shape[1]

    def kept(t: torch.Tensor) -> torch.Tensor:  # a (1, L) field of the training row, target blocks out
        return t[0][seen][:n]

    assert context.input_ids[0].tolist() == kept(train.input_ids).tolist()
    assert context.position_ids[0].tolist() == kept(train.position_ids).tolist() == list(range(n))
    assert ((context.block_ids[0] > 0) == (kept(train.block_ids) > 0)).all()
    assert not context.block_is_target.any() and context.block_grid.tolist() == [[1, 4, 4], [1, 4, 4]]
    clean = ~train.block_is_target[train.block_ids[0][train.block_ids[0] > 0] - 1]  # per visual position
    assert torch.equal(context.visual_codes, train.visual_codes[clean])
    assert torch.equal(context.visual_coords, train.visual_coords[clean])
    tail = train.input_ids[0][seen][n:].tolist()
    assert tail == ids(model, "ok") + [model.text_tokenizer.eos_token_id]  # then only the reply


# ----------------------------------------------------------------------------- decoding
def test_cached_decoding_equals_the_full_training_pass(model, monkeypatch):
    """Every text logit of a turn (text, image start, text after the drawn image, EOS) equals the
    full-sequence pass over the training row of the finished conversation."""
    tok, vocab = model.text_tokenizer, model.vocab
    script = Script([*ids(model, "ok"), vocab.image_start_id, *ids(model, "hi"), tok.eos_token_id])
    drawn = []
    append_image = chat_module.ChatDecoder.append_image

    def record(self, bits):
        drawn.append(bits.clone())
        append_image(self, bits)

    monkeypatch.setattr(chat_module.ChatDecoder, "append_image", record)
    messages = history()
    reply = model.chat(messages, seed=0, logits_processor=[script], **FAST)
    assert [type(c) for c in reply["content"]] == [str, Image.Image, str]
    assert reply["content"][0] == "ok" and reply["content"][2] == "hi"
    train, _ = training_row(model, [*messages, reply], bits={2: drawn[0][0]})
    ones = torch.ones(train.block_grid.shape[0])
    with torch.no_grad():  # clean inputs everywhere; target blocks stay hidden from later positions
        out = model(**train.as_dict(), visual_inputs=train.visual_codes, kept_fraction=ones)
    seen = torch.cat(script.seen)  # (6, V): o k <|image_start|> h i EOS, after the masked ids
    full = out.text_logits[-seen.shape[0] :].float()  # the reply's trained positions come last
    finite = torch.isfinite(seen)
    allowed = seen.shape[1] - len(chat_module.chat_suppressed_ids(model))  # bytes, EOS, <|image_start|>
    assert seen.shape[0] == 6 and (finite.sum(-1) == allowed).all() and allowed == 258
    torch.testing.assert_close(seen[finite], full[finite], atol=1e-4, rtol=1e-4)


def test_drawn_image_has_default_size_and_the_next_turn_reads_it(model):
    vocab = model.vocab
    messages = [{"role": "user", "content": "draw a red circle"}]
    reply = model.chat(messages, seed=1, logits_processor=[Script([vocab.image_start_id])], **FAST)
    images = [c for c in reply["content"] if isinstance(c, Image.Image)]
    assert len(images) == 1 and images[0].size == (32, 32) and images[0].mode == "RGB"
    follow_up = [*messages, reply, {"role": "user", "content": "what colour is it?"}]
    batch, kept = build_chat_context(model, follow_up)
    assert batch.block_grid.tolist() == [[1, 4, 4]] and kept[1]["role"] == "assistant"
    answer = model.chat(follow_up, seed=2, **FAST)
    assert answer["role"] == "assistant" and all(isinstance(c, (str, Image.Image)) for c in answer["content"])


def test_same_seed_same_reply(model):
    start = model.vocab.image_start_id

    def run(**seed):
        reply = model.chat(
            [{"role": "user", "content": "hi"}], logits_processor=[Script([start])], **FAST, **seed
        )
        return [np.asarray(c) if isinstance(c, Image.Image) else c for c in reply["content"]]

    def same(a, b) -> bool:
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

    first = run(seed=5)
    assert same(first, run(seed=5))
    assert same(first, run(generator=torch.Generator().manual_seed(5)))
    assert not same(first, run(seed=6))


def test_reply_stops_when_the_context_is_full(model, caplog):
    limit = model.config.text_config.max_position_embeddings
    prompt = [{"role": "user", "content": "x" * (limit - 30)}]
    context = build_chat_context(model, prompt)[0].input_ids.shape[1]
    always_z = Script(ids(model, "z") * 100)
    with caplog.at_level(logging.WARNING, logger="unified_grn.chat"):
        reply = model.chat(prompt, seed=0, max_new_tokens=100, logits_processor=[always_z])
    assert "context is full" in caplog.text
    assert reply["content"] == ["z" * (limit - context + 1)]  # the last one needs no position


# ----------------------------------------------------------------------------- truncation
def test_long_conversation_drops_oldest_turns_with_a_warning(model, caplog):
    turns = [{"role": "system", "content": "be brief"}]
    for k in range(8):  # about 45 positions a turn: more than the 256 GRN-tiny has
        turns += [
            {"role": "user", "content": [picture(k), f"question {k}"]},
            {"role": "assistant", "content": f"answer {k}"},
        ]
    turns.append({"role": "user", "content": "last"})
    with caplog.at_level(logging.WARNING, logger="unified_grn.chat_format"):
        batch, kept = build_chat_context(model, turns)
    assert "dropped its oldest" in caplog.text
    assert batch.input_ids.shape[1] <= model.config.text_config.max_position_embeddings
    assert kept[0]["content"] == [{"type": "text", "text": "be brief"}]  # the system message stays
    assert kept[1]["role"] == "user" and kept[-1]["content"] == [{"type": "text", "text": "last"}]
    assert 3 < len(kept) < len(turns) and (len(turns) - len(kept)) % 2 == 0  # whole turns
    with pytest.raises(ValueError, match="truncation=True"):
        build_chat_context(model, turns, truncation=False)
    assert model.chat(turns, seed=0, max_new_tokens=2)["role"] == "assistant"


def test_last_turn_too_long_is_an_error(model):
    limit = model.config.text_config.max_position_embeddings
    messages = [
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "y" * limit},
    ]
    with pytest.raises(ValueError, match="last user turn alone needs"):
        model.chat(messages)


# ----------------------------------------------------------------------------- bad input
def test_rgba_and_palette_images_become_rgb():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    image = load_chat_image(rgba)
    assert image.mode == "RGB" and np.asarray(image).min() == 255  # transparent -> white
    assert load_chat_image(Image.new("L", (5, 3))).mode == "RGB"


def _bad_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_text("not a png")
    return str(path)


def _gif(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return str(path)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: [], ValueError, "messages is empty"),
        (lambda p: {"role": "user", "content": "hi"}, ValueError, "wrap a single message"),
        (lambda p: [{"role": "bot", "content": "hi"}], ValueError, "role 'bot'"),
        (lambda p: [{"role": "user"}], ValueError, "'role' and 'content'"),
        (lambda p: [{"role": "user", "content": 42}], ValueError, "content of type int"),
        (lambda p: [{"role": "user", "content": [{"type": "video", "video": 1}]}], ValueError, "unknown content type"),
        (lambda p: [{"role": "user", "content": [3.5]}], ValueError, "content items are text"),
        (lambda p: [{"role": "user", "content": [{"type": "image"}]}], ValueError, "without its 'image'"),
        (lambda p: [{"role": "user", "content": [{"type": "image", "image": object()}]}], ValueError, "not an image"),
        (lambda p: [{"role": "user", "content": [{"type": "image", "image": str(p / "none.png")}]}], FileNotFoundError, "does not exist"),
        (lambda p: [{"role": "user", "content": [{"type": "image", "image": _bad_file(p)}]}], ValueError, "cannot read"),
        (lambda p: [{"role": "user", "content": [{"type": "image", "image": _gif(p)}]}], ValueError, "video"),
        (lambda p: [{"role": "user", "content": [np.zeros((8, 8), np.uint8)]}], ValueError, "2-D array"),
        (lambda p: [{"role": "user", "content": [np.zeros((3, 8, 8, 3), np.uint8)]}], ValueError, "is a video"),
        (lambda p: [{"role": "user", "content": [np.zeros((3, 8, 8), np.uint8)]}], ValueError, "channel-first"),
        (lambda p: [{"role": "user", "content": [np.zeros((8, 8, 3))]}], ValueError, "must be uint8"),
        (lambda p: [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], ValueError, "last message is the assistant"),
    ],
)  # fmt: skip
def test_bad_input_raises_a_clear_error(model, tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        model.chat(make(tmp_path), max_new_tokens=1)


def test_bad_arguments_raise_clear_errors(model):
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(TypeError, match="unexpected arguments \\['height'\\]"):
        model.chat(hi, height=64)
    with pytest.raises(TypeError, match="'num_inference_steps' -> 'num_steps'.*it takes: max_new_tokens"):
        model.chat(hi, num_inference_steps=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.chat(hi, max_new_tokens=0)
    # the listed names are exactly what chat() accepts: its own parameters and the image kwargs
    with pytest.raises(TypeError) as info:
        model.chat(hi, not_an_argument=1)
    listed = str(info.value).split("it takes: ")[1].rstrip(".").split(", ")
    own = [
        n
        for n in inspect.signature(chat_module.chat).parameters
        if n not in ("model", "messages", "image_kwargs")
    ]
    assert sorted(listed) == sorted(own + list(chat_module.CHAT_IMAGE_KWARGS))
    assert len(listed) == len(set(listed))
    with pytest.raises(ValueError, match="num_steps"):
        model.chat(hi, num_steps=0)
