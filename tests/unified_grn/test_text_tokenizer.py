"""The offline text tokenizers: the byte-level default and the BPE trained on the shapes worlds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from unified_grn import GRNForConditionalGeneration
from unified_grn.data.corpus import folder_texts, shapes_world_texts
from unified_grn.text_tokenizer import BYTE_VOCAB_SIZE, build_byte_tokenizer, train_bpe_tokenizer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(list(shapes_world_texts(300, 60, 100)), vocab_size=400)


def test_corpus_covers_every_world_and_is_deterministic():
    texts = list(shapes_world_texts(5, 3, 2, seed=1))
    assert len(texts) == 10 and texts == list(shapes_world_texts(5, 3, 2, seed=1))
    assert texts != list(shapes_world_texts(5, 3, 2, seed=2))
    assert "User: " in texts[-1] and "\nAssistant: " in texts[-1]


@pytest.mark.parametrize(
    "text", ["a red circle above a blue square", "User: how many?\nAssistant: three", "Ünïcode 🙂 ok", ""]
)
def test_bpe_round_trips_any_text_and_is_shorter_than_bytes(bpe, text):
    ids = bpe(text)["input_ids"]
    assert bpe.decode(ids) == text
    assert len(ids) <= len(text.encode())


def test_bpe_learns_the_grammar_words_and_keeps_the_specials(bpe):
    assert len(bpe("a red circle above a blue square")["input_ids"]) == 7  # one token per word
    assert bpe.convert_tokens_to_ids(["<|bos|>", "<|eos|>", "<|pad|>"]) == [0, 1, 2]
    assert BYTE_VOCAB_SIZE < len(bpe) <= 400
    assert len(build_byte_tokenizer()("a red circle")["input_ids"]) == 12  # the byte default
    with pytest.raises(ValueError, match="vocab_size must be >= 259"):
        train_bpe_tokenizer(["abc"], vocab_size=100)


def test_make_shapes_backbone_writes_a_backbone_grn_builds_on(tmp_path):
    script = load_script("make_shapes_backbone")
    out = tmp_path / "backbone"
    script.main(
        [
            "--out",
            str(out),
            "--hidden-size",
            "32",
            "--intermediate-size",
            "64",
            "--layers",
            "1",
            "--heads",
            "2",
        ]
        + ["--corpus", "50", "10", "20", "--vocab-size", "320"]
    )
    model = GRNForConditionalGeneration.from_backbone(out, visual_tokenizer="hbq-tiny", num_class_tokens=18)
    tokenizer = model.text_tokenizer
    ids = tokenizer("a red circle")["input_ids"]
    assert tokenizer.decode(ids) == "a red circle" and len(ids) < len("a red circle")
    assert model.config.base_vocab_size == len(
        script.train_bpe_tokenizer(list(shapes_world_texts(50, 10, 20)), 320)
    )
    out_ids = model.generate("a red circle", num_steps=2, seed=0, output_type="pt", progress_bar=False).images
    assert torch.isfinite(out_ids).all()


def _write_caption_folder(root: Path, captions: list[str], split: str | None = "train") -> Path:
    folder = root / split if split else root
    folder.mkdir(parents=True)
    rows = [{"file_name": f"{i:06d}.png", "text": text, "label": 0} for i, text in enumerate(captions)]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_folder_texts_reads_the_train_split_captions_and_skips_empty_ones(tmp_path):
    root = _write_caption_folder(tmp_path / "emoji", ["grinning face", "", "red apple"])
    assert list(folder_texts(root)) == ["grinning face", "red apple"]
    flat = _write_caption_folder(tmp_path / "flat", ["cat face"], split=None)
    assert list(folder_texts(flat)) == ["cat face"]
    with pytest.raises(FileNotFoundError, match="no metadata.jsonl in .*grn make-data"):
        list(folder_texts(tmp_path / "missing"))


def test_make_shapes_backbone_captions_from_trains_the_bpe_on_that_folder(tmp_path):
    script = load_script("make_shapes_backbone")
    captions = [
        "grinning face",
        "smiling face with halo",
        "red apple",
        "green apple",
        "face with tears of joy",
    ]
    root = _write_caption_folder(tmp_path / "emoji", captions * 20)
    out = tmp_path / "backbone"
    small = ["--hidden-size", "32", "--intermediate-size", "64", "--layers", "1", "--heads", "2"]
    script.main(["--out", str(out), "--captions-from", str(root), "--vocab-size", "300", *small])
    model = GRNForConditionalGeneration.from_backbone(out, visual_tokenizer="hbq-tiny")
    ids = model.text_tokenizer("green apple")["input_ids"]
    assert model.text_tokenizer.decode(ids) == "green apple"
    assert len(ids) <= 3  # words of the captions are merged; the shapes grammar was not used
    assert len(model.text_tokenizer("a red circle above a blue square")["input_ids"]) > 7
