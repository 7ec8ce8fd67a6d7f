"""Tests of the 3D causal VAE backbone (tokenizers_visual/causal_vae.py): shapes, causality,
chunked == one-shot passes, sizes from the config."""

from __future__ import annotations

import pytest
import torch

from tokenizers_visual.causal_vae import CausalCache, CausalConv3d, CausalVAE, ZeroLinear

TINY = dict(base_channels=16, channel_multipliers=(1, 2, 2), patch_size=2, spatial_stride=8)
VARIANTS = {
    "tiny": TINY,
    "no-patchify-attention-replicate": dict(
        base_channels=8,
        channel_multipliers=(1, 2, 2),
        patch_size=1,
        spatial_stride=8,
        use_attention=True,
        spatial_padding="replicate",
    ),
    "temporal-stride-2": dict(TINY, channel_multipliers=(1, 2), temporal_stride=2),
    "image-only-stride-1": dict(TINY, temporal_stride=1, resample_shortcut=False),
    "stride-16": dict(base_channels=8, channel_multipliers=(1, 2, 2, 2), patch_size=2, spatial_stride=16),
}


def _vae(seed: int = 0, **overrides) -> CausalVAE:
    torch.manual_seed(seed)
    vae = CausalVAE(**{**TINY, **overrides}).eval()
    for module in vae.modules():
        if isinstance(module, ZeroLinear):  # zero at init; make attention do something to test it
            assert module.weight.abs().sum() == 0
            torch.nn.init.normal_(module.weight, std=0.2)
    return vae


def _video(frames: int, size: int = 16, batch: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=gen) * 2 - 1


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shapes_image_and_video(name):
    kwargs = VARIANTS[name]
    vae = _vae(**kwargs)
    s, s_t = kwargs["spatial_stride"], kwargs.get("temporal_stride", 4)
    for frames in (1, 1 + 2 * s_t):
        x = _video(frames, size=16 if s == 8 else 32)
        with torch.no_grad():
            z = vae.encode(x)
            y = vae.decode(z)
        size = x.shape[-1] // s
        assert z.shape == (2, 16, 1 + (frames - 1) // s_t, size, size)
        assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_chunked_encode_and_decode_equal_one_shot(name):
    kwargs = VARIANTS[name]
    vae = _vae(**kwargs)
    s_t = kwargs.get("temporal_stride", 4)
    x = _video(1 + 3 * s_t, size=16 if kwargs["spatial_stride"] == 8 else 32, batch=1)
    with torch.no_grad():
        z = vae.encode(x)
        y = vae.decode(z)
        for chunk in (s_t, 2 * s_t):  # s_t: one latent frame at a time; 2 * s_t: a shorter last chunk
            torch.testing.assert_close(vae.encode(x, chunk_frames=chunk), z, atol=1e-5, rtol=0)
            torch.testing.assert_close(vae.decode(z, chunk_frames=chunk), y, atol=1e-5, rtol=0)


def test_image_equals_first_frame_of_video():
    """The 2D fast path for a lone first frame equals the causal 3D pass (zero past)."""
    vae = _vae(use_attention=True)
    x = _video(9)
    with torch.no_grad():
        z = vae.encode(x)
        torch.testing.assert_close(vae.encode(x[:, :, :1]), z[:, :, :1], atol=1e-5, rtol=0)
        torch.testing.assert_close(vae.decode(z[:, :, :1]), vae.decode(z)[:, :, :1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("frame", [0, 1, 3, 4, 5, 8, 11, 12])
def test_encoder_is_causal(frame):
    """Changing frame k changes no latent frame before the one that contains k, and changes that one."""
    vae = _vae()
    x = _video(13, batch=1)
    x2 = x.clone()
    x2[:, :, frame] = -x2[:, :, frame]
    with torch.no_grad():
        z, z2 = vae.encode(x), vae.encode(x2)
    owner = (frame + 3) // 4  # frame 0 -> latent 0; frames 4j-3 .. 4j -> latent j
    assert torch.equal(z[:, :, :owner], z2[:, :, :owner])
    assert (z[:, :, owner] - z2[:, :, owner]).abs().max() > 1e-4


@pytest.mark.parametrize("latent", [0, 1, 2])
def test_decoder_is_causal(latent):
    vae = _vae()
    z = torch.randn(1, 16, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    z2 = z.clone()
    z2[:, :, latent] += 1.0
    with torch.no_grad():
        y, y2 = vae.decode(z), vae.decode(z2)
    first = 0 if latent == 0 else 1 + 4 * (latent - 1)  # first output frame of this latent frame
    assert torch.equal(y[:, :, :first], y2[:, :, :first])
    assert (y[:, :, first] - y2[:, :, first]).abs().max() > 1e-4


def test_causal_conv_cache_handles_chunks_shorter_than_the_kernel():
    torch.manual_seed(0)
    conv = CausalConv3d(4, 5, (5, 3, 3))  # needs 4 past frames; feed 1 frame at a time
    x = torch.randn(2, 4, 7, 6, 6)
    cache = CausalCache()
    chunked = torch.cat([conv(x[:, :, t : t + 1], cache) for t in range(7)], dim=2)
    torch.testing.assert_close(chunked, conv(x), atol=1e-5, rtol=0)
    assert len(cache) == 1


def test_tiny_is_under_a_million_parameters():
    vae = CausalVAE(**TINY)
    assert sum(p.numel() for p in vae.parameters()) < 1_000_000


def test_paper_layout_on_meta_device():
    """The official Wan 2.2 layout (research: 702.7M for C=16); ours has 702.4M. Never allocated."""
    with torch.device("meta"):
        vae = CausalVAE(
            latent_channels=16,
            base_channels=160,
            decoder_base_channels=256,
            channel_multipliers=(1, 2, 4, 4),
            num_res_blocks=2,
            spatial_stride=16,
            temporal_stride=4,
            patch_size=2,
            use_attention=True,
        )
    assert all(p.is_meta for p in vae.parameters())
    count = sum(p.numel() for p in vae.parameters())
    assert 690e6 < count < 715e6, count
    assert vae.encoder.conv_in.weight.shape == (160, 12, 3, 3, 3)
    assert vae.last_layer.shape == (12, 256, 3, 3, 3)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(spatial_stride=12), "power of two"),
        (dict(spatial_stride=64), "needs 5 downsampling stages"),
        (dict(temporal_stride=8, channel_multipliers=(1, 2)), "temporal halvings"),
        (dict(spatial_padding="reflect"), "spatial_padding"),
        (dict(channel_multipliers=(1, 2, 3)), "resampling shortcut"),
    ],
)
def test_bad_layouts_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        CausalVAE(**{**TINY, **overrides})


def test_bad_frame_counts_and_chunks_raise():
    vae = _vae()
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(_video(6))
    with pytest.raises(ValueError, match="multiple of the temporal stride"):
        vae.encode(_video(9), chunk_frames=3)
