"""Tests of the HBQ tokenizer (tokenizers_visual/modeling_hbq.py): presets, encode/decode layouts,
chunking, save/load round trip, straight-through training path, the unquantized twin and input
validation."""

from __future__ import annotations

import logging

import pytest
import torch

from tokenizers_visual.hbq import bits_to_indices, dequantize
from tokenizers_visual.modeling_hbq import (
    HBQ_TOKENIZER_PRESETS,
    HBQCodes,
    HBQTokenizer,
    HBQTokenizerConfig,
    HBQTokenizerOutput,
)


def _tokenizer(seed: int = 0, **overrides) -> HBQTokenizer:
    torch.manual_seed(seed)
    return HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny", **overrides)).eval()


@pytest.fixture(scope="module")
def tok() -> HBQTokenizer:
    return _tokenizer()


def _pixels(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------------------- presets


def test_presets_and_parameter_counts():
    """Counts: hbq-tiny 0.67M, hbq-shapes 2.19M, paper 702.4M (C=16) / 704.6M (C=64) on meta."""
    counts = {}
    for name in HBQ_TOKENIZER_PRESETS:
        with torch.device("meta"):
            counts[name] = HBQTokenizer(HBQTokenizerConfig.from_preset(name)).num_parameters()
    assert counts["hbq-tiny"] < 1_000_000
    assert 1_000_000 < counts["hbq-shapes"] < 3_000_000
    assert 690e6 < counts["hbq-paper-image"] < counts["hbq-paper-video"] < 715e6
    paper = HBQTokenizerConfig.from_preset("hbq-paper-video")
    assert (paper.latent_channels, paper.rounds, paper.spatial_stride, paper.temporal_stride) == (
        64,
        4,
        16,
        4,
    )
    assert HBQTokenizerConfig.from_preset("hbq-paper-image").latent_channels == 16
    assert HBQTokenizerConfig.from_preset("hbq-shapes").spatial_stride == 8


def test_unknown_preset_lists_names_and_overrides_apply():
    with pytest.raises(
        ValueError, match=r"unknown HBQ tokenizer preset 'hbq-huge'; known presets: \[.*'hbq-tiny'"
    ):
        HBQTokenizerConfig.from_preset("hbq-huge")
    assert HBQTokenizerConfig.from_preset("hbq-tiny", rounds=8).rounds == 8
    with pytest.raises(ValueError, match="rounds must be"):
        HBQTokenizerConfig(rounds=0)


# ---------------------------------------------------------------------------------- encode/decode


@pytest.mark.parametrize(("shape", "grid"), [((2, 3, 16, 16), (1, 2, 2)), ((2, 3, 9, 16, 32), (3, 2, 4))])
def test_encode_decode_shapes_and_dtypes(tok, shape, grid):
    pixels = _pixels(*shape)
    codes = tok.encode(pixels)
    assert isinstance(codes, HBQCodes)
    assert codes.grid == grid and codes.rounds == 4
    assert codes.bits.shape == (2, *grid, 16, 4) and codes.bits.dtype == torch.uint8
    assert codes.indices.shape == (2, *grid, 16) and codes.indices.dtype == torch.int64
    assert torch.equal(codes.indices, bits_to_indices(codes.bits))
    out = tok.decode(codes)
    t = shape[2] if len(shape) == 5 else 1
    assert out.shape == (2, 3, t, *shape[-2:]) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_decode_accepts_codes_bits_and_indices(tok):
    codes = tok.encode(_pixels(1, 3, 16, 16))
    ref = tok.decode(codes)
    for form in (codes.bits, codes.bits.bool(), codes.indices, codes.bits[:, 0], codes.indices[:, 0]):
        assert torch.equal(tok.decode(form), ref)
    assert torch.equal(tok.decode(HBQCodes.from_indices(codes.indices, 4)), ref)
    assert torch.equal(tok.decode_image(codes), ref[:, :, 0])


def test_chunked_encode_and_decode_match_one_shot(tok):
    pixels = _pixels(1, 3, 13, 16, 16)
    latents = tok.encode_latents(pixels)
    with torch.no_grad():
        torch.testing.assert_close(tok.encode_latents(pixels, chunk_frames=4), latents, atol=1e-5, rtol=0)
        torch.testing.assert_close(tok.encode_latents(pixels, chunk_frames=8), latents, atol=1e-5, rtol=0)
    codes = tok.encode(pixels)
    torch.testing.assert_close(tok.decode(codes, chunk_frames=4), tok.decode(codes), atol=1e-5, rtol=0)


def test_save_and_load_round_trip_is_exact(tmp_path):
    tok = _tokenizer(seed=3, use_attention=True)
    assert tok.vae.encoder.middle.attention.proj.weight.abs().sum() == 0  # identity at init (Wan)
    with torch.no_grad():  # move every weight off its init, so loading cannot pass by re-initialising
        for param in tok.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    pixels = _pixels(1, 3, 5, 16, 16)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    loaded = HBQTokenizer.from_pretrained(tmp_path).eval()
    saved, reloaded = tok.config.to_dict(), loaded.config.to_dict()
    reloaded.pop("_name_or_path"), saved.pop("_name_or_path")
    assert reloaded == saved
    codes = tok.encode(pixels)
    assert torch.equal(loaded.encode(pixels).bits, codes.bits)
    assert torch.equal(loaded.decode(codes), tok.decode(codes))
    with torch.no_grad():
        assert torch.equal(loaded(pixels).reconstruction, tok(pixels).reconstruction)


# ---------------------------------------------------------------------------------- training path


def test_forward_straight_through_gradient_reaches_encoder():
    tok = _tokenizer().train()
    pixels = _pixels(2, 3, 16, 16)
    out = tok(pixels)
    assert isinstance(out, HBQTokenizerOutput)
    assert out.reconstruction.shape == pixels.shape  # images stay 4D in forward
    assert out.bits.shape == (2, 1, 2, 2, 16, 4)
    values = dequantize(out.bits).permute(0, 4, 1, 2, 3)  # (B, C, T', H', W')
    torch.testing.assert_close(out.quantized.detach(), values)
    assert (out.quantized - out.latents).abs().max() <= 2**-4
    (out.reconstruction - pixels).abs().mean().backward()
    encoder_grad = tok.vae.encoder.conv_in.weight.grad
    assert encoder_grad is not None and encoder_grad.abs().sum() > 0
    assert tok.last_decoder_layer is tok.vae.decoder.conv_out.weight
    assert tok.last_decoder_layer.grad is not None


def test_unquantized_twin(tmp_path):
    twin = _tokenizer(rounds=None)
    pixels = _pixels(1, 3, 5, 16, 16)
    out = twin(pixels)
    assert out.bits is None and out.quantized is out.latents
    assert out.latents.abs().max() < 1
    with pytest.raises(ValueError, match="unquantized twin"):
        twin.encode(pixels)
    with pytest.raises(ValueError, match="unquantized twin"):
        twin.decode(torch.zeros(1, 1, 2, 2, 16, 4, dtype=torch.uint8))
    recon = twin.decode_latents(twin.encode_latents(pixels))
    assert recon.shape == pixels.shape
    twin.save_pretrained(tmp_path)
    assert HBQTokenizer.from_pretrained(tmp_path).config.rounds is None


def test_no_print_output(tok, capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger="tokenizers_visual"):
        tok.decode(tok.encode(_pixels(1, 3, 16, 16)))
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), r"pixels\.float\(\) / 127\.5 - 1"),
        (torch.zeros(1, 4, 16, 16), r"\(B, 3, H, W\) images or \(B, 3, T, H, W\) videos"),
        (torch.zeros(1, 16, 16, 3), r"channels last\? move them with pixels\.movedim\(-1, 1\)"),
        (torch.zeros(3, 16, 16), r"unsqueeze\(0\)"),
        (torch.zeros(1, 3, 1, 1, 16, 16), r"\(B, 3, T, H, W\) videos; got shape \(1, 3, 1, 1, 16, 16\)"),
        (
            torch.zeros(1, 3, 20, 16),
            r"height 20 is not divisible by the spatial stride 8; nearest valid heights: 16 or 24",
        ),
        (torch.zeros(1, 3, 16, 4), r"width 4 .* nearest valid widths: 8"),
        (
            torch.zeros(1, 3, 6, 16, 16),
            r"frame count 6 is not of the form 1 \+ 4k .* nearest valid counts: 5 or 9",
        ),
        (torch.zeros(1, 3, 0, 16, 16), r"frame count 0 .* nearest valid counts: 1"),
        (torch.full((1, 3, 16, 16), 255.0), r"must lie in \[-1, 1\].*\[0, 255\].*pixels / 127\.5 - 1"),
        (torch.full((1, 3, 16, 16), -1.5), r"must lie in \[-1, 1\], got values in \[-1\.5, -1\.5\]"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        ([[0.0]], "must be a torch.Tensor"),
    ],
)
def test_bad_pixels_raise_clear_errors(tok, pixels, match):
    with pytest.raises(ValueError, match=match):
        tok.encode(pixels)


def test_slight_overshoot_is_accepted(tok):
    tok.encode(torch.full((1, 3, 16, 16), 1.05))


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        (torch.zeros(1, 1, 2, 2, 8, 4, dtype=torch.uint8), r"bits \(B, T', H', W', 16, 4\)"),
        (torch.zeros(1, 1, 2, 2, 16, 6, dtype=torch.uint8), r"got shape \(1, 1, 2, 2, 16, 6\)"),
        (torch.zeros(1, 1, 2, 2, 12, dtype=torch.int64), r"indices \(B, T', H', W', 16\)"),
        (torch.full((1, 1, 2, 2, 16), 16, dtype=torch.int64), r"\[0, 16\)"),
        (torch.zeros(1, 16, 1, 2, 2), "decode_latents"),
        (HBQCodes.from_bits(torch.zeros(1, 1, 2, 2, 16, 2, dtype=torch.uint8)), r"16, 4"),
    ],
)
def test_bad_codes_raise_clear_errors(tok, codes, match):
    with pytest.raises(ValueError, match=match):
        tok.decode(codes)


def test_bad_chunk_frames_and_latents_raise(tok):
    with pytest.raises(ValueError, match="positive multiple of the temporal stride 4"):
        tok.encode(_pixels(1, 3, 5, 16, 16), chunk_frames=2)
    with pytest.raises(ValueError, match=r"latents must be \(B, 16, T', H', W'\)"):
        tok.decode_latents(torch.zeros(1, 8, 1, 2, 2))
    with pytest.raises(ValueError, match="one latent frame"):
        tok.decode_image(tok.encode(_pixels(1, 3, 5, 16, 16)))


def test_auto_classes_load_a_saved_tokenizer(tmp_path):
    from transformers import AutoConfig, AutoModel

    import tokenizers_visual

    torch.manual_seed(0)
    tok = tokenizers_visual.HBQTokenizer(tokenizers_visual.HBQTokenizerConfig.from_preset("hbq-tiny")).eval()
    tok.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), tokenizers_visual.HBQTokenizerConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, tokenizers_visual.HBQTokenizer)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(tok.encode(x).bits, loaded.encode(x).bits)


def test_fingerprint_survives_save_load_and_changes_with_weights(tmp_path):
    torch.manual_seed(0)
    tok = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny"))
    tok.save_pretrained(tmp_path)
    assert HBQTokenizer.from_pretrained(tmp_path).fingerprint() == tok.fingerprint()
    with torch.no_grad():
        next(tok.parameters()).view(-1)[0] += 1e-3
    assert HBQTokenizer.from_pretrained(tmp_path).fingerprint() != tok.fingerprint()
