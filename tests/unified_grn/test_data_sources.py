"""Training data sources: every format loads, missing captions are unconditional, corrupt rows are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unified_grn.collator import GRNCollator, TextSegment, VisualSegment
from unified_grn.data import (
    CLASS_NAMES,
    Example,
    SourceConfig,
    build_source,
    make_moving_shapes_example,
    make_shapes_chat_example,
    make_shapes_example,
    to_grn_sample,
    write_moving_shapes_dataset,
    write_shapes_chat_dataset,
    write_shapes_dataset,
)
from unified_grn.text_tokenizer import BYTE_VOCAB_SIZE, add_grn_special_tokens, build_byte_tokenizer
from unified_grn.vocab import GRNVocab

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    write_shapes_dataset(root / "shapes", 8, seed=0, size=SIZE)
    write_moving_shapes_dataset(root / "moving", 2, seed=0, size=SIZE, num_frames=5)
    write_shapes_chat_dataset(root / "chat", 2, seed=0, size=SIZE)
    (root / "corpus.txt").write_text("the first line\n\n   \nthe second line\n")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in ("one", "", "two")))
    return root


def pixels_of(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(1) / 127.5 - 1  # (3, 1, H, W)


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def test_image_folder_gives_captions_and_pixels(data):
    source = build_source(SourceConfig("images", str(data / "shapes"), size=SIZE))
    meta = rows(data / "shapes" / "train")
    assert len(source) == len(meta) and source.task == "t2i"
    for index in range(len(source)):
        ex = source.load(index)
        line = next(m for m in meta if m["file_name"] == ex.id)
        assert ex.task == "t2i" and ex.text == line["text"] and ex.source == "images:shapes"
        assert ex.label == (line["label"] if line["label"] >= 0 else None)
        assert torch.allclose(ex.visuals[0], pixels_of(data / "shapes" / "train" / ex.id), atol=1e-6)


def write_images(folder: Path, names: list[str], metadata: list[dict] | None) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.new("RGB", (40, 48), (10 * i, 100, 200)).save(folder / name)
    if metadata is not None:
        (folder / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metadata))


def test_missing_captions_mean_unconditional(tmp_path):
    meta = [
        {"file_name": "a.png", "text": "a caption"},
        {"file_name": "b.png"},
        {"file_name": "c.png", "text": None},
    ]
    write_images(tmp_path / "some" / "train", ["a.png", "b.png", "c.png"], meta)
    write_images(tmp_path / "none" / "train", ["a.png", "b.png"], None)
    some = build_source(SourceConfig("images", str(tmp_path / "some"), size=SIZE))
    assert {ex.id: ex.text for ex in some} == {"a.png": "a caption", "b.png": "", "c.png": ""}
    none = build_source(SourceConfig("images", str(tmp_path / "none"), size=SIZE))
    examples = list(none)
    assert [ex.text for ex in examples] == ["", ""]
    assert examples[0].visuals[0].shape == (3, 1, SIZE, SIZE)  # resized + centre-cropped


def test_corrupt_images_and_videos_are_skipped_and_counted(tmp_path, data):
    meta = [{"file_name": n, "text": n} for n in ("a.png", "bad.png", "b.png")]
    write_images(tmp_path / "imgs" / "train", ["a.png", "b.png"], meta)
    (tmp_path / "imgs" / "train" / "bad.png").write_bytes(b"not a png")
    source = build_source(SourceConfig("images", str(tmp_path / "imgs"), size=SIZE))
    assert sorted(ex.text for ex in source) == ["a.png", "b.png"]
    bad = next(i for i in range(len(source)) if source.data[i]["text"] == "bad.png")
    assert source.load(bad) is None and source.load(bad) is None  # counted once
    assert len(source.skipped) == 1 and next(iter(source.skipped.bad)).endswith("bad.png")

    video_dir = tmp_path / "vids" / "train"
    video_dir.mkdir(parents=True)
    good = (data / "moving" / "train" / "000000.mp4").read_bytes()
    (video_dir / "ok.mp4").write_bytes(good)
    (video_dir / "cut.mp4").write_bytes(good[: len(good) // 3])  # truncated
    (video_dir / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": n, "text": n}) + "\n" for n in ("ok.mp4", "cut.mp4"))
    )
    videos = build_source(SourceConfig("videos", str(tmp_path / "vids"), size=SIZE, num_frames=5))
    assert [ex.text for ex in videos] == ["ok.mp4"] and len(videos.skipped) == 1
    too_long = build_source(SourceConfig("videos", str(tmp_path / "vids"), size=SIZE, num_frames=9))
    assert list(too_long) == [] and len(too_long.skipped) == 2  # 5-frame clips cannot give 9 frames


def test_video_folder_gives_clips(data):
    source = build_source(SourceConfig("videos", str(data / "moving"), size=SIZE, num_frames=5))
    ex = source.load(0)
    truth = make_moving_shapes_example(0, 0, SIZE, 5)
    assert ex.task == "t2v" and ex.text == truth["text"] and ex.visuals[0].shape == (3, 5, SIZE, SIZE)
    expected = torch.from_numpy(truth["video"]).permute(3, 0, 1, 2).float() / 127.5 - 1
    assert (ex.visuals[0] - expected).abs().max() < 0.1  # H.264 4:4:4 at crf 0 is near-lossless


def test_class_labels_from_a_column_or_subfolders(tmp_path, data):
    source = build_source(SourceConfig("classes", str(data / "shapes"), size=SIZE))
    labelled = [m for m in rows(data / "shapes" / "train") if m["label"] >= 0]
    assert len(source) == len(labelled) > 0  # rows without a class are left out
    assert sorted(ex.label for ex in source) == sorted(m["label"] for m in labelled)
    for cls in ("dog", "cat"):
        write_images(tmp_path / "pets" / "train" / cls, [f"{cls}{i}.png" for i in range(2)], None)
    pets = build_source(SourceConfig("classes", str(tmp_path / "pets"), size=SIZE))
    assert pets.class_names == ["cat", "dog"]
    assert (
        sorted((ex.id[:3], ex.label, ex.task) for ex in pets)
        == [("cat", 0, "c2i")] * 2 + [("dog", 1, "c2i")] * 2
    )


def test_conversations_keep_text_and_images_interleaved(data):
    source = build_source(SourceConfig("conversations", str(data / "chat"), size=SIZE))
    lines = (data / "chat" / "train" / "conversations.jsonl").read_text().splitlines()
    assert len(source) == len(lines) == 2
    for index, line in enumerate(lines):
        raw, ex = json.loads(line), source.load(index)
        assert ex.task == "chat" and [m["role"] for m in ex.messages] == [m["role"] for m in raw["messages"]]
        names = [c["image"] for m in raw["messages"] for c in m["content"] if c["type"] == "image"]
        refs = [c["index"] for m in ex.messages for c in m["content"] if c["type"] == "image"]
        assert refs == list(range(len(names))) and len(ex.visuals) == len(names)
        for name, pixels in zip(names, ex.visuals):
            assert torch.allclose(pixels, pixels_of(data / "chat" / "train" / name), atol=1e-6)
    single = build_source(SourceConfig("conversations", str(data / "chat" / "train" / "conversations.jsonl")))
    assert len(single) == 2


def test_conversation_with_a_missing_image_is_skipped(tmp_path, data):
    folder = tmp_path / "chat"
    folder.mkdir()
    lines = (data / "chat" / "train" / "conversations.jsonl").read_text().splitlines()
    (folder / "c.jsonl").write_text("\n".join(lines) + "\n")  # its PNGs are not copied
    source = build_source(SourceConfig("conversations", str(folder), size=SIZE))
    assert list(source) == [] and len(source.skipped) == 2


def test_text_corpora(data):
    lines = build_source(SourceConfig("text", str(data / "corpus.txt")))
    assert [ex.text for ex in lines] == ["the first line", "the second line"]  # blank rows dropped
    assert all(ex.task == "text" and ex.visuals == [] for ex in lines)
    doc = build_source(SourceConfig("text", str(data / "corpus.txt"), sample_by="document"))
    assert len(doc) == 1 and "second" in doc.load(0).text
    jsonl = build_source(SourceConfig("text", str(data / "corpus.jsonl"), text_column="body"))
    assert [ex.text for ex in jsonl] == ["one", "two"]


def test_procedural_sources_need_no_files_and_are_deterministic():
    shapes = build_source(SourceConfig("shapes", size=SIZE, seed=3))
    assert len(shapes) > 10**12 and shapes.iid  # unbounded
    truth = make_shapes_example(3, 7, SIZE)
    ex = shapes.load(7)
    assert ex.text == truth["text"] and torch.equal(
        ex.visuals[0], build_source(SourceConfig("shapes", size=SIZE, seed=3)).load(7).visuals[0]
    )
    classes = build_source(SourceConfig("shapes-classes", size=SIZE, num_samples=5))
    assert len(classes) == 5
    for ex in classes:
        assert ex.task == "c2i" and CLASS_NAMES[ex.label] in ex.text and ex.text.startswith("a")
    clip = build_source(SourceConfig("moving-shapes", size=SIZE, num_frames=5)).load(0)
    assert clip.task == "t2v" and clip.visuals[0].shape == (3, 5, SIZE, SIZE)
    chat = build_source(SourceConfig("shapes-chat", size=SIZE)).load(1)
    assert len(chat.visuals) == len(make_shapes_chat_example(0, 1, SIZE)["images"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="pictures", path="x"), "unknown data source kind"),
        (dict(kind="images"), "needs a path"),
        (dict(kind="shapes", weight=-1.0), "weight"),
        (dict(kind="images", path="x", task="c2i"), "cache sources only"),
    ],
)
def test_bad_source_configs_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SourceConfig(**kwargs)


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_source(SourceConfig("images", str(tmp_path / "nowhere")))


def test_examples_become_collator_samples():
    vocab = GRNVocab(BYTE_VOCAB_SIZE, BYTE_VOCAB_SIZE + 32, 18, "bit", num_channels=4, num_rounds=2)
    tokenizer = add_grn_special_tokens(build_byte_tokenizer(), vocab)
    codes = torch.randint(0, 4, (1, 2, 2, 4))  # (T', H', W', C) indices
    chat = Example(
        "chat",
        visuals=[codes, codes],
        messages=[
            {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "what?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
            {"role": "user", "content": [{"type": "text", "text": "draw it"}]},
            {"role": "assistant", "content": [{"type": "image", "index": 1}]},
        ],
    )
    samples = [
        to_grn_sample(Example("t2i", text="", visuals=[codes])),
        to_grn_sample(Example("c2i", label=3, visuals=[codes]), class_token_id=vocab.class_token_id),
        to_grn_sample(Example("text", text="hello"), eos_token_id=tokenizer.eos_token_id),
        to_grn_sample(chat, eos_token_id=7),
    ]
    assert [s.task for s in samples] == ["t2i", "c2i", "text", "chat"]
    assert samples[1].segments[0].text == [vocab.class_token_id(3)]
    segs = samples[3].segments
    visual = [s for s in segs if isinstance(s, VisualSegment)]
    assert [(v.target, v.start_label) for v in visual] == [(False, False), (True, True)]
    trained = [s.text for s in segs if isinstance(s, TextSegment) and s.loss]
    assert trained == ["red", [7], [7]]  # EOS after the text reply and after the image reply
    assert isinstance(segs[-1], TextSegment) and segs[-1].text == [7] and isinstance(segs[-2], VisualSegment)
    batch = GRNCollator(tokenizer, vocab, condition_drop_prob=0.0)(samples)
    # the drawn image is followed by EOS, so the collator adds its clean copy for the model to read
    assert batch.block_is_target.tolist() == [True, True, False, True, False]
    with pytest.raises(ValueError, match="still holds pixels"):
        to_grn_sample(Example("t2i", visuals=[torch.zeros(3, 1, 8, 8)]))
