"""Visual-token export (issue 8): codes <-> packed bytes <-> LLM ids round trips, folders and datasets
in, files out, and clear errors for mismatched tokenizers and bad inputs."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tokenizers_visual.modeling_hbq import HBQTokenizer, HBQTokenizerConfig
from unified_grn import export_io
from unified_grn.data.moving_shapes import make_moving_shapes_example, read_video, write_video
from unified_grn.data.shapes import write_shapes_dataset
from unified_grn.export import (
    _CODE_FEATURES,
    _LLM_FEATURES,
    decode_visual_tokens,
    export_visual_tokens,
    load_export,
    load_visual_tokenizer,
    pack_codes,
    tokenizer_fingerprint,
    unpack_codes,
)
from unified_grn.llm_tokens import (
    VISUAL_END,
    VISUAL_START,
    VisualTokenLayout,
    extend_llm_tokenizer,
    find_visual_segments,
    llm_ids_to_codes,
    value_token,
)
from unified_grn.vocab import flatten_bits

CAPTIONS = ["hello world", "a red circle above a blue square", "two green triangles"]


def _tiny_hbq(seed: int = 0, **overrides) -> HBQTokenizer:
    torch.manual_seed(seed)
    return HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny", **overrides)).eval()


def _bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]
    )
    tok.train_from_iterator(CAPTIONS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def _wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"])
    tok.train_from_iterator(CAPTIONS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


@pytest.fixture(scope="module")
def hbq() -> HBQTokenizer:
    return _tiny_hbq()


@pytest.fixture(scope="module")
def hbq_dir(hbq, tmp_path_factory):
    path = tmp_path_factory.mktemp("hbq")
    hbq.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    """3 shapes PNGs (+ captions), 2 five-frame mp4s, a five-frame GIF and one broken PNG."""
    root = tmp_path_factory.mktemp("media")
    write_shapes_dataset(root / "shapes", 3, seed=0, size=32)
    clips = root / "clips"
    clips.mkdir()
    for i in range(2):
        write_video(make_moving_shapes_example(1, i, 32, 5)["video"], clips / f"clip{i}.mp4")
    frames = [Image.fromarray(f) for f in make_moving_shapes_example(2, 0, 32, 5)["video"]]
    frames[0].save(clips / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (root / "shapes" / "train" / "broken.png").write_bytes(b"not a png")
    return root


def _random_bits(shape, seed=0) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# ----------------------------------------------------------------------------- packing and ids


@pytest.mark.parametrize("grid, c, m", [((1, 4, 4), 16, 4), ((2, 3, 5), 3, 3), ((3, 1, 2), 1, 1)])
def test_pack_codes_round_trip_and_order(grid, c, m):
    bits = _random_bits((*grid, c, m))
    data = pack_codes(bits)
    assert len(data) == (bits.numel() + 7) // 8
    assert torch.equal(unpack_codes(data, grid, c, m), bits)
    # canonical order: positions raster-major, then slot r * C + c (vocab.flatten_bits)
    flat = np.unpackbits(np.frombuffer(data, np.uint8), count=bits.numel())
    assert np.array_equal(flat, flatten_bits(bits).reshape(-1).numpy())
    with pytest.raises(ValueError, match="needs"):
        unpack_codes(data + b"\0", grid, c, m)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
@pytest.mark.parametrize("bits_per_token", [4, 8, 16])
def test_layout_round_trip_every_bits_per_token(kind, bits_per_token):
    base = _bpe_tokenizer() if kind == "bpe" else _wordpiece_tokenizer()
    before = len(base)
    tok, layout = extend_llm_tokenizer(base, 16, 4, bits_per_token, max_grid_size=8)
    assert len(base) == before  # the argument is not mutated
    assert len(tok) == before + 4 + 8 + 2**bits_per_token
    assert layout.tokens_per_position == 64 // bits_per_token
    bits = _random_bits((2, 2, 3, 5, 16, 4), seed=bits_per_token)
    ids = layout.codes_to_ids(bits)
    assert ids.shape == (2, layout.sequence_length((2, 3, 5)))
    assert torch.equal(llm_ids_to_codes(ids, layout).bits, bits)
    assert torch.equal(llm_ids_to_codes(ids.tolist(), tok).bits, bits)  # layout read from the tokenizer
    text = layout.ids_to_text(ids[0])
    assert text.startswith(VISUAL_START + "<|vis_dim_2|><|vis_dim_3|><|vis_dim_5|>") and text.endswith(
        VISUAL_END
    )
    assert tok(text, add_special_tokens=False)["input_ids"] == ids[0].tolist()  # the string form re-tokenizes
    # first token of a position = its first b slots (coarsest round first), MSB first
    first = flatten_bits(bits[0, 0, 0, 0])[:bits_per_token].tolist()
    assert ids[0, 4].item() == layout.value_offset + int("".join(map(str, first)), 2)
    assert tok.convert_ids_to_tokens(int(ids[0, 4])) == value_token(
        bits_per_token, int(ids[0, 4]) - layout.value_offset
    )


def test_extended_tokenizer_saves_and_reloads(tmp_path):
    tok, layout = extend_llm_tokenizer(
        _bpe_tokenizer(), 16, 4, 8, hbq_fingerprint="abc", save_directory=tmp_path
    )
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert VisualTokenLayout.from_tokenizer(again) == layout == VisualTokenLayout.load(tmp_path)
    assert len(again) == len(tok) and layout.hbq_fingerprint == "abc"
    bits = _random_bits((1, 1, 2, 2, 16, 4))
    assert torch.equal(llm_ids_to_codes(layout.codes_to_ids(bits)[0], tmp_path).bits, bits)


def test_bits_per_token_must_divide_c_times_m():
    with pytest.raises(ValueError, match=r"C\*M = 3\*4 = 12 bits.*\[4\]"):
        extend_llm_tokenizer(_bpe_tokenizer(), 3, 4, 8)
    with pytest.raises(ValueError, match=r"one of \(4, 8, 16\)"):
        extend_llm_tokenizer(_bpe_tokenizer(), 16, 4, 5)
    with pytest.raises(ValueError, match="none"):
        extend_llm_tokenizer(_bpe_tokenizer(), 3, 1, 4)


def test_bad_ids_are_clear_errors():
    _, layout = extend_llm_tokenizer(_bpe_tokenizer(), 16, 4, 16, max_grid_size=4)
    ids = layout.codes_to_ids(_random_bits((1, 1, 2, 2, 16, 4)))[0].tolist()
    text_ids = [5, 6, 7]
    assert torch.equal(
        llm_ids_to_codes(text_ids + ids + text_ids, layout).bits, llm_ids_to_codes(ids, layout).bits
    )
    assert find_visual_segments(ids + text_ids + ids, layout) == [
        (0, len(ids)),
        (len(ids) + 3, 2 * len(ids) + 3),
    ]
    cases = {
        "exactly one": ids + ids,
        "unbalanced": ids[:-1],
        "has 24 tokens, got 23": ids[:5] + ids[6:],
        "misplaced": [*ids[:12], ids[4], *ids[13:]],
        "non-value token": [*ids[:5], 5, *ids[6:]],
        "vis_dim": [ids[0], 3, *ids[2:]],
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            llm_ids_to_codes(bad, layout)
    with pytest.raises(ValueError, match="max_grid_size=4"):
        layout.codes_to_ids(_random_bits((1, 1, 5, 1, 16, 4)))
    with pytest.raises(ValueError, match="carries no visual token layout"):
        llm_ids_to_codes(ids, _bpe_tokenizer())


# ----------------------------------------------------------------------------- export folder


def test_reserved_columns_match_features():
    assert export_io.RESERVED_COLUMNS == set(_CODE_FEATURES) | set(_LLM_FEATURES)


@pytest.fixture(scope="module")
def expected_bits(hbq, media_dir) -> dict[str, torch.Tensor]:
    """Each readable input file encoded on its own (the reference the export must match exactly)."""
    out = {}
    for path in sorted(media_dir.rglob("*")):
        if path.suffix in (".png", ".mp4", ".gif") and path.name != "broken.png":
            frames = (
                [Image.open(path).convert("RGB")] if path.suffix == ".png" else export_io._read_video(path)
            )
            pixels = export_io.to_pixels(frames, None, hbq.config, None)
            out[path.relative_to(media_dir).as_posix()] = hbq.encode(pixels[None]).bits[0]
    return out


@pytest.mark.parametrize("bits_per_token", [4, 8, 16])
def test_export_folder_round_trips(hbq, hbq_dir, media_dir, expected_bits, tmp_path, bits_per_token):
    out = tmp_path / "export"
    table = export_visual_tokens(
        media_dir, out, hbq_dir, llm_tokenizer=_bpe_tokenizer(), bits_per_token=bits_per_token, progress=False
    )
    manifest = json.loads((out / "visual_tokens.json").read_text())
    assert (manifest["num_images"], manifest["num_videos"], manifest["num_skipped"]) == (3, 3, 1)
    assert manifest["skipped"][0]["source"] == "shapes/train/broken.png"
    assert manifest["tokenizer_fingerprint"] == tokenizer_fingerprint(hbq)
    assert manifest["llm"]["layout"]["bits_per_token"] == bits_per_token
    assert table.num_rows == 6 and datasets.load_from_disk(str(out)).num_rows == 6
    layout = VisualTokenLayout.load(out / "llm_tokenizer")
    llm = AutoTokenizer.from_pretrained(out / "llm_tokenizer") if bits_per_token != 16 else None
    for row in table:
        bits = unpack_codes(row["bits"], row["grid"], row["num_channels"], row["num_rounds"])
        assert torch.equal(bits, expected_bits[row["source"]])  # exactly the encoder's codes
        assert torch.equal(llm_ids_to_codes(row["input_ids"], layout).bits[0], bits)
        assert row["kind"] == ("image" if row["source"].endswith(".png") else "video")
        assert row["grid"] == ([1, 4, 4] if row["kind"] == "image" else [2, 4, 4])
        if llm is not None:
            assert llm(row["token_text"], add_special_tokens=False)["input_ids"] == row["input_ids"]
    shapes = [r for r in table if r["kind"] == "image"]
    assert [r["text"] for r in shapes] == [
        json.loads(line)["text"] for line in open(media_dir / "shapes/train/metadata.jsonl")
    ]


def test_decode_from_codes_and_ids_is_identical(hbq, hbq_dir, media_dir, tmp_path):
    out = tmp_path / "export"
    table = export_visual_tokens(
        media_dir, out, hbq_dir, llm_tokenizer=_bpe_tokenizer(), progress=False, batch_size=2
    )
    from_codes = decode_visual_tokens(out, tmp_path / "a", hbq_dir, progress=False)
    from_ids = decode_visual_tokens(
        out, tmp_path / "b", hbq, ids_column="input_ids", video_format="gif", progress=False
    )
    assert [p.suffix for p in from_codes] == [".mp4"] * 3 + [".png"] * 3
    assert [p.suffix for p in from_ids] == [".gif"] * 3 + [".png"] * 3
    assert from_codes[3].name == "000003_shapes_train_000000.png"
    for i, (a, b) in enumerate(zip(from_codes, from_ids)):
        row = table[i]
        bits = unpack_codes(row["bits"], row["grid"], 16, 4)
        expected = (
            ((hbq.decode(bits[None])[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        )
        if a.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(a)), expected[0])
            assert np.array_equal(np.asarray(Image.open(b)), expected[0])
        else:
            assert read_video(a).shape == expected.shape == (5, 32, 32, 3)


def test_dataset_inputs_and_resize(hbq, media_dir, tmp_path):
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(media_dir / "shapes"), cache_dir=str(tmp_path / "cache"), split="train"
    )
    table = export_visual_tokens(ds, tmp_path / "a", hbq, size=16, progress=False)
    assert table.num_rows == 3 and table[0]["grid"] == [1, 2, 2] and table[0]["height"] == 16
    assert table["text"] == ds["text"] and table["label"] == ds["label"]
    ds.save_to_disk(str(tmp_path / "saved"))
    again = export_visual_tokens(tmp_path / "saved", tmp_path / "b", hbq, size=(16, 24), progress=False)
    assert (
        again[0]["grid"] == [1, 2, 3]
        and again[0]["width"] == 24
        and again["source"][0].endswith("000000.png")
    )
    both = export_visual_tokens(
        datasets.DatasetDict(train=ds, test=ds.select([0])), tmp_path / "c", hbq, progress=False
    )
    assert both["split"] == ["train"] * 3 + ["test"] and both.num_rows == 4
    with pytest.raises(ValueError, match="no .*Image or Video"):
        export_visual_tokens(ds.remove_columns("image"), tmp_path / "d", hbq, progress=False)


def test_fingerprint_is_stable_and_sensitive(hbq, hbq_dir, tmp_path):
    fp = tokenizer_fingerprint(hbq)
    assert len(fp) == 64 and tokenizer_fingerprint(hbq_dir) == fp
    grn = tmp_path / "grn"
    hbq.save_pretrained(grn / "visual_tokenizer")
    (grn / "config.json").write_text(json.dumps({"model_type": "grn"}))
    assert tokenizer_fingerprint(load_visual_tokenizer(grn)) == fp  # GRN model folder -> visual_tokenizer/
    assert tokenizer_fingerprint(_tiny_hbq(seed=1)) != fp
    with pytest.raises(ValueError, match="neither an HBQ tokenizer folder"):
        load_visual_tokenizer(tmp_path)


def test_mismatched_tokenizer_is_a_clear_error(hbq, media_dir, tmp_path):
    out = tmp_path / "export"
    export_visual_tokens(media_dir / "shapes", out, hbq, llm_tokenizer=_bpe_tokenizer(), progress=False)
    other_c = _tiny_hbq(latent_channels=8)
    with pytest.raises(ValueError, match=r"C=16, M=4.*but the decoding tokenizer .*C=8, M=4"):
        decode_visual_tokens(out, tmp_path / "x", other_c, progress=False)
    with pytest.raises(ValueError, match=r"C=16, M=4.*C=16, M=2"):
        decode_visual_tokens(out, tmp_path / "x", _tiny_hbq(rounds=2), ids_column="input_ids", progress=False)
    other_weights = _tiny_hbq(seed=7)
    fp, other_fp = tokenizer_fingerprint(hbq), tokenizer_fingerprint(other_weights)
    with pytest.raises(
        ValueError, match=f"fingerprint {fp}.*fingerprint {other_fp} \\(same C and M, other weights\\)"
    ):
        decode_visual_tokens(out, tmp_path / "x", other_weights, progress=False)
    with pytest.raises(ValueError, match="other weights"):
        decode_visual_tokens(out, tmp_path / "x", other_weights, ids_column="input_ids", progress=False)
    assert (
        len(decode_visual_tokens(out, tmp_path / "y", other_weights, check_fingerprint=False, progress=False))
        == 3
    )


def test_bad_inputs(hbq, media_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no image"):
        export_visual_tokens(empty, tmp_path / "o1", hbq, progress=False)
    (empty / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no readable images or videos.*1 skipped"):
        export_visual_tokens(empty, tmp_path / "o2", hbq, progress=False)
    with pytest.raises(FileNotFoundError):
        export_visual_tokens(tmp_path / "missing", tmp_path / "o3", hbq, progress=False)
    with pytest.raises(ValueError, match="multiples of the spatial stride 8"):
        export_visual_tokens(media_dir, tmp_path / "o4", hbq, size=20, progress=False)
    with pytest.raises(ValueError, match="needs llm_tokenizer"):
        export_visual_tokens(media_dir, tmp_path / "o5", hbq, bits_per_token=8, progress=False)
    out = tmp_path / "o6"
    export_visual_tokens(media_dir / "clips", out, hbq, max_frames=3, parquet=True, progress=False)
    assert load_export(out)[0]["grid"] == [[1, 4, 4]] * 3 and (out / "codes.parquet").is_file()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_visual_tokens(media_dir / "clips", out, hbq, progress=False)
    assert export_visual_tokens(media_dir / "clips", out, hbq, overwrite=True, progress=False)["grid"][0] == [
        2,
        4,
        4,
    ]
    with pytest.raises(FileExistsError, match="not a visual-token export"):
        export_visual_tokens(media_dir / "clips", media_dir, hbq, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="no 'nope' column"):
        decode_visual_tokens(out, tmp_path / "d", hbq, ids_column="nope", progress=False)
    with pytest.raises(FileNotFoundError, match="visual_token_layout.json"):
        decode_visual_tokens(out, tmp_path / "d", hbq, ids_column="kind", progress=False)
    with pytest.raises(ValueError, match="not an export folder"):
        decode_visual_tokens(media_dir, tmp_path / "d", hbq, progress=False)
