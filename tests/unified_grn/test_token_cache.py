"""The token cache: cached codes equal direct encoding, decode, metadata, C/M mismatch, ``grn cache-tokens``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from tokenizers_visual.modeling_hbq import HBQTokenizer, HBQTokenizerConfig
from unified_grn.cli import main
from unified_grn.data import (
    SourceConfig,
    TokenCacheMismatchError,
    build_source,
    cache_tokens,
    encode_examples,
    load_token_cache,
    load_visual_tokenizer,
    tokenizer_fingerprint,
    write_moving_shapes_dataset,
    write_shapes_chat_dataset,
    write_shapes_dataset,
)
from unified_grn.data.token_cache import TOKEN_CACHE_META

SIZE = 32


def tiny_tokenizer(seed: int = 0, **overrides) -> HBQTokenizer:
    torch.manual_seed(seed)
    return HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny", **overrides)).eval()


@pytest.fixture(scope="module")
def tokenizer() -> HBQTokenizer:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def data(tmp_path_factory, tokenizer) -> Path:
    root = tmp_path_factory.mktemp("cache")
    write_shapes_dataset(root / "shapes", 5, seed=1, size=SIZE)
    (root / "shapes" / "train" / "000002.png").write_bytes(b"corrupt")
    write_moving_shapes_dataset(root / "moving", 2, seed=1, size=SIZE, num_frames=5)
    write_shapes_chat_dataset(root / "chat", 2, seed=1, size=SIZE)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def direct_codes(source, index: int, tokenizer: HBQTokenizer) -> list[torch.Tensor]:
    return [tokenizer.encode(v[None]).indices[0] for v in source.load(index).visuals]


def test_cached_images_equal_direct_encoding_and_decode(tmp_path, data, tokenizer):
    cfg = SourceConfig("images", str(data / "shapes"), size=SIZE)
    cache = cache_tokens(cfg, tokenizer, tmp_path / "c", batch_size=2, progress=False)
    source = build_source(cfg)
    assert len(cache) == 4 and cache.meta["num_skipped"] == 1 and cache.task == "t2i"
    assert cache.meta["skipped"][0].endswith("000002.png")
    by_id = {source.load(i).id: i for i in range(len(source)) if source.load(i) is not None}
    for index in range(len(cache)):
        ex = cache.load(index)
        raw = source.load(by_id[ex.id])
        assert ex.text == raw.text and ex.label == raw.label and ex.coded
        (codes,) = ex.visuals
        assert codes.shape == (1, SIZE // 8, SIZE // 8, 16) and codes.dtype == torch.int64
        assert torch.equal(codes, direct_codes(source, by_id[ex.id], tokenizer)[0])
        assert tokenizer.decode(codes[None]).shape == (1, 3, 1, SIZE, SIZE)
    meta = json.loads((tmp_path / "c" / TOKEN_CACHE_META).read_text())
    assert meta["tokenizer"]["latent_channels"] == 16 and meta["tokenizer"]["rounds"] == 4
    assert meta["tokenizer"]["fingerprint"] == tokenizer_fingerprint(tokenizer)
    assert meta["source"]["kind"] == "images" and not list(tmp_path.glob(".c.tmp-*"))


def test_cached_videos_and_conversations_round_trip(tmp_path, data, tokenizer):
    cfg = SourceConfig("videos", str(data / "moving"), size=SIZE, num_frames=5)
    videos = cache_tokens(cfg, tokenizer, tmp_path / "v", progress=False)
    source = build_source(cfg)
    assert [ex.text for ex in videos] == [ex.text for ex in source]
    assert torch.equal(videos.load(1).visuals[0], direct_codes(source, 1, tokenizer)[0])
    assert videos.load(1).visuals[0].shape == (2, 4, 4, 16)  # 5 frames -> 1 + 1 latent frames

    cfg = SourceConfig("shapes-chat", size=SIZE, seed=2, num_samples=2)
    chats = cache_tokens(cfg, tokenizer, tmp_path / "chat", batch_size=2, progress=False)
    source = build_source(cfg)
    for index in range(2):
        ex, raw = chats.load(index), source.load(index)
        assert ex.messages == raw.messages and len(ex.visuals) == len(raw.visuals)
        for codes, direct in zip(ex.visuals, direct_codes(source, index, tokenizer)):
            assert torch.equal(codes, direct)


def test_encode_examples_batches_by_shape(tokenizer):
    source = build_source(SourceConfig("shapes-chat", size=SIZE, seed=4))
    examples = [source.load(i) for i in range(3)]
    coded = encode_examples(examples, tokenizer)
    assert all(ex.coded for ex in coded) and not any(ex.coded for ex in examples)  # inputs untouched
    assert torch.equal(coded[2].visuals[-1], tokenizer.encode(examples[2].visuals[-1][None]).indices[0])
    with pytest.raises(ValueError, match="spatial stride 8"):
        encode_examples([build_source(SourceConfig("shapes", size=36)).load(0)], tokenizer)


def test_a_tokenizer_with_other_channels_or_rounds_is_refused(tmp_path, data, tokenizer, caplog):
    cache_tokens(SourceConfig("shapes", size=SIZE, num_samples=2), tokenizer, tmp_path / "c", progress=False)
    with pytest.raises(TokenCacheMismatchError, match=r"C \(latent channels\) = 16.*has 8"):
        load_token_cache(tmp_path / "c", tokenizer=tiny_tokenizer(latent_channels=8))
    with pytest.raises(TokenCacheMismatchError, match=r"M \(rounds\) = 4.*has 6"):
        load_token_cache(tmp_path / "c", num_channels=16, num_rounds=6)
    with caplog.at_level(logging.WARNING, logger="unified_grn.data.token_cache"):
        load_token_cache(tmp_path / "c", tokenizer=tiny_tokenizer(seed=1))  # same C / M, other weights
    assert "other weights" in caplog.text
    cache = build_source(SourceConfig("cache", str(tmp_path / "c"), task="c2i", name="classes"))
    assert cache.task == "c2i" and cache.name == "classes" and len(cache) == 2


def test_cache_refuses_to_overwrite_and_unbounded_sources(tmp_path, tokenizer):
    cache_tokens(SourceConfig("shapes", size=SIZE, num_samples=1), tokenizer, tmp_path / "c", progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        cache_tokens(
            SourceConfig("shapes", size=SIZE, num_samples=1), tokenizer, tmp_path / "c", progress=False
        )
    with pytest.raises(ValueError, match="unbounded"):
        cache_tokens(SourceConfig("shapes", size=SIZE), tokenizer, tmp_path / "d", progress=False)
    with pytest.raises(FileNotFoundError, match="not a token cache"):
        load_token_cache(tmp_path)


def test_grn_cache_tokens_end_to_end(tmp_path, data, tokenizer, capsys):
    out = tmp_path / "tokens"
    argv = ["cache-tokens", "images", str(data / "shapes"), "--tokenizer", str(data / "tokenizer")]
    argv += ["--out", str(out), "--size", str(SIZE), "--quiet"]
    assert main(argv) == 0
    assert "cached 4 t2i rows (1 unreadable skipped) with C=16, M=4" in capsys.readouterr().out
    cache = load_token_cache(out, tokenizer=load_visual_tokenizer(data / "tokenizer"))
    assert cache.fingerprint == tokenizer_fingerprint(tokenizer) and len(cache) == 4
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    assert (
        main(["cache-tokens", "images", "--tokenizer", str(data / "tokenizer"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "needs a path" in capsys.readouterr().err
