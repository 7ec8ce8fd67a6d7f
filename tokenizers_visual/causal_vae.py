"""3D causal convolutional VAE backbone of the HBQ visual tokenizer.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1 and Sec. 4.1: the tokenizer adopts the
3D causal encoder/decoder of Wan 2.1 (the official checkpoints use the Wan 2.2 layout: 2x2
patchify, parameter-free space/time-to-channel shortcuts around every resampling stage, a
narrower encoder than decoder). This is an independent implementation of that design; the HBQ
step itself (tanh, quantization) lives in ``modeling_hbq.py`` and ``hbq.py``.

Layout conventions, for a temporal stride ``s_t`` and a spatial stride ``s``:

* tensors are ``(B, C, T, H, W)``; an image is a video with ``T = 1``;
* ``1 + s_t * k`` frames -> ``1 + k`` latent frames: the first frame is encoded alone, every
  later latent frame covers ``s_t`` frames, so latent frame ``j >= 1`` sees frames ``<= s_t * j``;
* every temporal operation is causal (past-only padding) and every normalisation is per frame
  (an RMS norm over channels), so a long video can be processed in chunks.

Chunked passes use a :class:`CausalCache`: one cache is created per pass and handed to every
layer, and each layer stores under its own key what the next chunk needs from this one (a
temporal convolution keeps its last ``k - 1`` input frames). A layer with no entry yet is
looking at the first chunk, which starts at frame 0. Chunked and one-shot passes agree to float
rounding. The causal primitives (cache, causal convolution, per-frame norm) live in
``causal_conv.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .causal_conv import PADDING_MODES, CausalCache, CausalConv3d, RMSNorm3d, is_first_chunk, per_frame

__all__ = ["CausalCache", "CausalConv3d", "CausalVAE", "RMSNorm3d", "SpatialAttention", "ZeroLinear"]


class ResidualBlock(nn.Module):
    """Pre-norm residual block: (RMSNorm, SiLU, CausalConv3d) x 2, 1x1x1 shortcut on width change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, padding_mode: str) -> None:
        super().__init__()
        self.norm1 = RMSNorm3d(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, padding_mode)
        self.norm2 = RMSNorm3d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, padding_mode)
        self.shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))), cache)
        return h + (x if self.shortcut is None else self.shortcut(x, cache))


class ZeroLinear(nn.Linear):
    """A linear layer that starts at zero, so the residual branch it ends starts as the identity."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (never across frames)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = RMSNorm3d(channels)
        self.to_qkv = nn.Linear(channels, 3 * channels)
        self.proj = ZeroLinear(channels, channels)  # Wan zero-initialises the output projection

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        _, _, frames, height, _ = x.shape
        tokens = rearrange(self.norm(x), "b c t h w -> (b t) (h w) c")
        q, k, v = self.to_qkv(tokens).chunk(3, dim=-1)  # each (B*T, H*W, C)
        out = self.proj(F.scaled_dot_product_attention(q, k, v))
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", t=frames, h=height)


class Downsample(nn.Module):
    """Halve H and W (per-frame stride-2 conv) and optionally T (causal stride-2 time conv).

    Temporal halving keeps frame 0 alone and maps frames ``(2j-1, 2j)`` to latent frame ``j``
    with a (3, 1, 1) kernel over frames ``2j-2 .. 2j``, so ``1 + 2k`` frames -> ``1 + k``.
    """

    def __init__(self, channels: int, temporal: bool, padding_mode: str) -> None:
        super().__init__()
        self.padding_mode = "constant" if padding_mode == "zeros" else "replicate"
        self.spatial = nn.Conv2d(channels, channels, 3, stride=2)
        self.time_conv = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(F.pad(x, (0, 1, 0, 1), mode=self.padding_mode))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = per_frame(self._spatial, x)
        if self.time_conv is None:
            return x
        first = is_first_chunk(cache, self)
        if not first:
            x = torch.cat([cache.get(self), x], dim=2)  # the previous chunk's last frame leads
        if cache is not None:
            cache.set(self, x[:, :, -1:])
        if (x.shape[2] - 1) % 2:
            raise ValueError(
                f"temporal downsampling needs 1 + 2k frames per chunk (counting the carried frame), got {x.shape[2]}"
            )
        y = self.time_conv(x) if x.shape[2] > 1 else x[:, :, :0]  # (B, C, (T-1)/2, H, W)
        return torch.cat([x[:, :, :1], y], dim=2) if first else y


class Upsample(nn.Module):
    """Optionally double T (causal time conv, frame 0 kept alone), then double H and W (nearest + conv)."""

    def __init__(self, channels: int, temporal: bool, padding_mode: str) -> None:
        super().__init__()
        self.time_conv = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None
        self.spatial = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode)

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.time_conv is not None and x.shape[2] == 1 and is_first_chunk(cache, self.time_conv):
            self.time_conv.update_cache(x, cache)  # a lone frame 0 passes through unchanged
        elif self.time_conv is not None:
            first = is_first_chunk(cache, self.time_conv)
            y = rearrange(self.time_conv(x, cache), "b (two c) t h w -> b c (t two) h w", two=2)
            # Frame 0 maps to one frame (itself); every later frame to two.
            x = torch.cat([x[:, :, :1], y[:, :, 2:]], dim=2) if first else y
        return per_frame(self._spatial, x)


def _channel_regroup(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Average groups of channels down to ``out_channels`` or repeat channels up to it."""
    channels = x.shape[1]
    if channels >= out_channels:
        return rearrange(x, "b (o g) t h w -> b o g t h w", o=out_channels).mean(dim=2)
    return x.repeat_interleave(out_channels // channels, dim=1)


def _check_regroup(channels: int, out_channels: int) -> None:
    if max(channels, out_channels) % min(channels, out_channels):
        raise ValueError(
            f"a resampling shortcut cannot map {channels} folded channels to {out_channels}; "
            "choose channel_multipliers so that one divides the other"
        )


class SpaceToChannel(nn.Module):
    """Parameter-free shortcut of a downsampling stage (Wan 2.2's AvgDown3D idea).

    Folds each (t, 2, 2) or (1, 2, 2) neighbourhood into channels and averages channel groups to
    ``out_channels``. Frame 0 is paired with a copy of itself, matching :class:`Downsample`.
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        _check_regroup(in_channels * factor_t * factor_s**2, out_channels)
        self.out_channels, self.factor_t, self.factor_s = out_channels, factor_t, factor_s

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.factor_t > 1 and is_first_chunk(cache, self):
            x = torch.cat([x[:, :, :1]] * (self.factor_t - 1) + [x], dim=2)
        if cache is not None:
            cache.set(self, x[:, :, :0])  # a marker: the first chunk has been seen
        fs = self.factor_s
        x = rearrange(x, "b c (t a) (h p) (w q) -> b (c a p q) t h w", a=self.factor_t, p=fs, q=fs)
        return _channel_regroup(x, self.out_channels)


class ChannelToSpace(nn.Module):
    """Parameter-free shortcut of an upsampling stage (Wan 2.2's DupUp3D idea); frame 0 -> 1 frame."""

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        _check_regroup(in_channels, out_channels * factor_t * factor_s**2)
        self.folded = out_channels * factor_t * factor_s**2
        self.factor_t, self.factor_s = factor_t, factor_s

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        first = is_first_chunk(cache, self)
        if cache is not None:
            cache.set(self, x[:, :, :0])
        fs = self.factor_s
        x = _channel_regroup(x, self.folded)  # (B, C_out * a * p * q, T, H, W)
        x = rearrange(x, "b (c a p q) t h w -> b c (t a) (h p) (w q)", a=self.factor_t, p=fs, q=fs)
        return x[:, :, self.factor_t - 1 :] if first else x


class MiddleBlock(nn.Module):
    """Residual block, optional per-frame spatial attention, residual block."""

    def __init__(self, channels: int, use_attention: bool, dropout: float, padding_mode: str) -> None:
        super().__init__()
        self.block1 = ResidualBlock(channels, channels, dropout, padding_mode)
        self.attention = SpatialAttention(channels) if use_attention else None
        self.block2 = ResidualBlock(channels, channels, dropout, padding_mode)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = self.block1(x, cache)
        if self.attention is not None:
            x = self.attention(x)
        return self.block2(x, cache)


class Stage(nn.Module):
    """Residual blocks then an optional resampling, plus its parameter-free shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        *,
        down: bool,
        spatial: bool,
        temporal: bool,
        shortcut: bool,
        dropout: float,
        padding_mode: str,
    ) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.blocks = nn.ModuleList(
            ResidualBlock(a, b, dropout, padding_mode) for a, b in zip(widths[:-1], widths[1:])
        )
        resample_cls, shortcut_cls = (Downsample, SpaceToChannel) if down else (Upsample, ChannelToSpace)
        self.resample = resample_cls(out_channels, temporal, padding_mode) if spatial else None
        factor_t = 2 if temporal else 1
        use_shortcut = shortcut and spatial
        self.shortcut = shortcut_cls(in_channels, out_channels, factor_t, 2) if use_shortcut else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h, cache)
        if self.resample is not None:
            h = self.resample(h, cache)
        return h if self.shortcut is None else h + self.shortcut(x, cache)


class CausalCoder(nn.Module):
    """The encoder (``down=True``) or the decoder of the VAE.

    Encoder: conv_in -> stages (blocks + downsampling) -> middle -> RMSNorm, SiLU, conv_out.
    Decoder: conv_in -> middle -> stages (blocks + upsampling) -> RMSNorm, SiLU, conv_out.
    ``plan[i] = (spatial, temporal)`` says whether stage ``i`` resamples H, W and T.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: list[int],
        num_res_blocks: int,
        plan: list[tuple[bool, bool]],
        *,
        down: bool,
        use_attention: bool,
        **stage_kwargs,
    ) -> None:
        super().__init__()
        pad = stage_kwargs["padding_mode"]
        self.down = down
        self.conv_in = CausalConv3d(in_channels, widths[0], 3, pad)
        self.stages = nn.ModuleList(
            Stage(widths[i], widths[i + 1], num_res_blocks, down=down, spatial=s, temporal=t, **stage_kwargs)
            for i, (s, t) in enumerate(plan)
        )
        middle_width = widths[-1] if down else widths[0]
        self.middle = MiddleBlock(middle_width, use_attention, stage_kwargs["dropout"], pad)
        self.norm_out = RMSNorm3d(widths[-1])
        self.conv_out = CausalConv3d(widths[-1], out_channels, 3, pad)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = self.conv_in(x, cache)
        if not self.down:
            x = self.middle(x, cache)
        for stage in self.stages:
            x = stage(x, cache)
        if self.down:
            x = self.middle(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


def _log2_exact(value: int, name: str) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value}.")
    return value.bit_length() - 1


def _resampling_counts(
    num_stages: int, spatial_stride: int, temporal_stride: int, patch_size: int
) -> tuple[int, int]:
    """How many stages halve H, W and how many of them also halve T."""
    if spatial_stride % patch_size:
        raise ValueError(f"spatial_stride {spatial_stride} must be a multiple of patch_size {patch_size}.")
    num_spatial = _log2_exact(spatial_stride // patch_size, "spatial_stride / patch_size")
    num_temporal = _log2_exact(temporal_stride, "temporal_stride")
    if num_spatial > num_stages:
        raise ValueError(
            f"spatial_stride {spatial_stride} with patch_size {patch_size} needs {num_spatial} "
            f"downsampling stages, but channel_multipliers has only {num_stages}."
        )
    if num_temporal > num_spatial:
        raise ValueError(
            f"temporal_stride {temporal_stride} needs {num_temporal} temporal halvings, but only "
            f"{num_spatial} stages downsample (T is halved together with H and W)."
        )
    return num_spatial, num_temporal


def _chunk_slices(num_frames: int, chunk: int) -> list[slice]:
    """Frame 0 alone, then consecutive chunks of ``chunk`` frames."""
    return [slice(0, 1)] + [slice(s, min(s + chunk, num_frames)) for s in range(1, num_frames, chunk)]


class CausalVAE(nn.Module):
    """The encoder/decoder pair: pixels ``(B, C_in, T, H, W)`` <-> latents ``(B, C, T', H', W')``.

    Args:
        in_channels: pixel channels (3 for RGB).
        latent_channels: ``C``, the latent width (16 image-only, 64 joint image-video in the paper).
        base_channels: encoder width of the first stage; stage ``i`` is ``base * multipliers[i]``.
        decoder_base_channels: decoder width unit (``None``: same as the encoder; Wan 2.2 uses 256 vs 160).
        channel_multipliers: one entry per stage, e.g. ``(1, 2, 4, 4)``.
        num_res_blocks: residual blocks per encoder stage (decoder stages get one more, as in Wan).
        spatial_stride: total spatial downsampling ``patch_size * 2^(stages that downsample)``.
        temporal_stride: 1 (each frame alone), 2 or 4; ``1 + s_t k`` frames -> ``1 + k`` latents.
        patch_size: pixel-unshuffle at the input (Wan 2.2 uses 2); 1 disables it.
        use_attention: single-head spatial attention in the middle blocks.
        spatial_padding: ``"zeros"`` or ``"replicate"`` for spatial borders.
        resample_shortcut: parameter-free space/time <-> channel shortcuts around resampling stages.
        dropout: dropout inside residual blocks.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        latent_channels: int = 16,
        base_channels: int = 32,
        decoder_base_channels: int | None = None,
        channel_multipliers: tuple[int, ...] | list[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        spatial_stride: int = 8,
        temporal_stride: int = 4,
        patch_size: int = 1,
        use_attention: bool = False,
        spatial_padding: str = "zeros",
        resample_shortcut: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        mults = list(channel_multipliers)
        num_spatial, num_temporal = _resampling_counts(
            len(mults), spatial_stride, temporal_stride, patch_size
        )
        if spatial_padding not in PADDING_MODES:
            raise ValueError(f"spatial_padding must be one of {PADDING_MODES}, got {spatial_padding!r}.")
        self.spatial_stride = spatial_stride
        self.temporal_stride = temporal_stride
        self.patch_size = patch_size
        # Wan: the encoder halves T in its last spatial stages, the decoder doubles T in its first.
        first_t = num_spatial - num_temporal
        enc_plan = [(i < num_spatial, first_t <= i < num_spatial) for i in range(len(mults))]
        dec_plan = [(i < num_spatial, i < num_temporal) for i in range(len(mults))]
        kwargs = dict(
            use_attention=use_attention,
            shortcut=resample_shortcut,
            dropout=dropout,
            padding_mode=spatial_padding,
        )
        pixels = in_channels * patch_size**2
        enc_widths = [base_channels * m for m in [1, *mults]]
        dec_widths = [(decoder_base_channels or base_channels) * m for m in [mults[-1], *mults[::-1]]]
        self.encoder = CausalCoder(
            pixels, latent_channels, enc_widths, num_res_blocks, enc_plan, down=True, **kwargs
        )
        self.decoder = CausalCoder(
            latent_channels, pixels, dec_widths, num_res_blocks + 1, dec_plan, down=False, **kwargs
        )

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the decoder's final convolution (for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    def _check_chunking(self, num_frames: int, chunk_frames: int | None) -> None:
        if (num_frames - 1) % self.temporal_stride:
            raise ValueError(
                f"frame count must be 1 + {self.temporal_stride}k for temporal stride "
                f"{self.temporal_stride}, got {num_frames}."
            )
        if chunk_frames is not None and (chunk_frames < 1 or chunk_frames % self.temporal_stride):
            raise ValueError(
                f"chunk_frames must be a positive multiple of the temporal stride {self.temporal_stride}, "
                f"got {chunk_frames}."
            )

    def _encode_chunk(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        p = self.patch_size
        x = rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=p, q=p)  # (B, C_in*p*p, T, H/p, W/p)
        return self.encoder(x, cache)

    def _decode_chunk(self, z: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        p = self.patch_size
        x = self.decoder(z, cache)  # (B, C_in*p*p, T, H/p, W/p)
        return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=p, q=p)

    def encode(self, pixels: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Encode ``(B, C_in, 1 + s_t k, H, W)`` to pre-tanh latents ``(B, C, 1 + k, H/s, W/s)``.

        ``chunk_frames=None`` runs one pass; otherwise frame 0 is encoded alone and the rest in
        chunks of ``chunk_frames`` (a multiple of the temporal stride) through a causal cache.
        """
        self._check_chunking(pixels.shape[2], chunk_frames)
        if chunk_frames is None:
            return self._encode_chunk(pixels, None)
        cache = CausalCache()
        slices = _chunk_slices(pixels.shape[2], chunk_frames)
        return torch.cat([self._encode_chunk(pixels[:, :, s], cache) for s in slices], dim=2)

    def decode(self, latents: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Decode ``(B, C, 1 + k, h, w)`` to ``(B, C_in, 1 + s_t k, h*s, w*s)`` (no clamping).

        ``chunk_frames`` counts output frames per chunk after the first (a multiple of the
        temporal stride); ``chunk_frames = s_t`` decodes one latent frame at a time.
        """
        self._check_chunking(1, chunk_frames)
        if chunk_frames is None:
            return self._decode_chunk(latents, None)
        cache = CausalCache()
        slices = _chunk_slices(latents.shape[2], chunk_frames // self.temporal_stride)
        return torch.cat([self._decode_chunk(latents[:, :, s], cache) for s in slices], dim=2)
