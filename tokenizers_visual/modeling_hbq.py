"""The HBQ visual tokenizer: pixels <-> Hierarchical Binary Quantization codes.

GRN paper (Han et al., 2026, arXiv 2604.13030), Sec. 3.1, Sec. 4.1 and Appendix A: a 3D causal
VAE in the Wan 2.1/2.2 style (``causal_vae.py``) whose encoder output goes through ``tanh`` and
``M`` rounds of HBQ (``hbq.py``); the decoder reads the dequantized latent. Training uses the
straight-through estimator. ``rounds=None`` builds the paper's unquantized "w/o quant" twin
(``tanh`` only), which has latents but no codes.

Layout (docs/CONTRACTS.md): pixels are float in [-1, 1], ``(B, 3, T, H, W)`` or ``(B, 3, H, W)``
(an image is a 1-frame video), ``T = 1 + s_t k``; codes are channel-last,
``bits (B, T', H', W', C, M)`` uint8 and ``indices (B, T', H', W', C)`` int64, with
``(T', H', W') = (1 + (T - 1) / s_t, H / s, W / s)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .causal_vae import CausalVAE, RMSNorm3d, ZeroLinear
from .hbq import bits_to_indices, dequantize, indices_to_bits, quantize_ste

__all__ = [
    "HBQ_TOKENIZER_PRESETS",
    "HBQCodes",
    "HBQTokenizer",
    "HBQTokenizerConfig",
    "HBQTokenizerOutput",
]

logger = logging.getLogger(__name__)

_CPU = dict(
    num_res_blocks=1, rounds=4, spatial_stride=8, temporal_stride=4, patch_size=2, use_attention=False
)
_PAPER = dict(  # the official Wan 2.2 layout (research/grn_official.md Sec. 2.1)
    base_channels=160,
    decoder_base_channels=256,
    channel_multipliers=[1, 2, 4, 4],
    num_res_blocks=2,
    rounds=4,
    spatial_stride=16,
    temporal_stride=4,
    patch_size=2,
    use_attention=True,
)

# The only place tokenizer sizes appear. Parameter counts (checked in test_modeling_hbq.py): hbq-tiny
# 0.67M, hbq-shapes 2.19M, hbq-paper-image 702.4M, hbq-paper-video 704.6M (official 702.7M / 705.7M).
HBQ_TOKENIZER_PRESETS: dict[str, dict[str, Any]] = {
    "hbq-tiny": dict(
        _CPU, base_channels=16, decoder_base_channels=None, channel_multipliers=[1, 2, 2], latent_channels=16
    ),
    "hbq-shapes": dict(
        _CPU, base_channels=24, decoder_base_channels=32, channel_multipliers=[1, 2, 2], latent_channels=16
    ),
    "hbq-paper-image": dict(_PAPER, latent_channels=16),
    "hbq-paper-video": dict(_PAPER, latent_channels=64),
}


class HBQTokenizerConfig(PreTrainedConfig):
    r"""Configuration of :class:`HBQTokenizer`. Defaults are the ``hbq-shapes`` preset.

    Args:
        in_channels (`int`, defaults to 3): pixel channels.
        base_channels (`int`, defaults to 24): encoder width of the first stage; stage ``i`` has
            ``base_channels * channel_multipliers[i]`` channels.
        decoder_base_channels (`int | None`, defaults to 32): the decoder's width unit (``None``:
            same as ``base_channels``; the paper's Wan 2.2 layout uses 256 against 160).
        channel_multipliers (`list[int]`, defaults to `[1, 2, 2]`): one entry per stage.
        num_res_blocks (`int`, defaults to 1): residual blocks per encoder stage (decoder: one more).
        latent_channels (`int`, defaults to 16): ``C``; the paper uses 16 for images, 64 for images + videos.
        rounds (`int | None`, defaults to 4): HBQ rounds ``M`` (1 to 16); ``None`` is the unquantized
            "w/o quant" twin (``tanh`` only, no codes).
        spatial_stride (`int`, defaults to 8): ``s``, 8 or 16 in practice; ``patch_size * 2^k`` with
            ``k <= len(channel_multipliers)``.
        temporal_stride (`int`, defaults to 4): ``s_t`` in {1, 2, 4}; ``1 + s_t k`` frames -> ``1 + k``.
        patch_size (`int`, defaults to 2): pixel-unshuffle at the input (Wan 2.2: 2); 1 disables it.
        use_attention (`bool`, defaults to `False`): single-head spatial attention in the middle blocks.
        spatial_padding (`str`, defaults to `"zeros"`): ``"zeros"`` or ``"replicate"`` spatial borders.
        resample_shortcut (`bool`, defaults to `True`): parameter-free space/time <-> channel
            shortcuts around every resampling stage (Wan 2.2).
        dropout (`float`, defaults to 0.0): dropout inside residual blocks.
    """

    model_type = "hbq_tokenizer"

    in_channels: int = 3
    base_channels: int = 24
    decoder_base_channels: int | None = 32
    channel_multipliers: list[int] | tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 16
    rounds: int | None = 4
    spatial_stride: int = 8
    temporal_stride: int = 4
    patch_size: int = 2
    use_attention: bool = False
    spatial_padding: str = "zeros"
    resample_shortcut: bool = True
    dropout: float = 0.0

    def __post_init__(self, **kwargs):
        self.channel_multipliers = list(self.channel_multipliers)
        bad_type = isinstance(self.rounds, bool) or not isinstance(self.rounds, int)
        if self.rounds is not None and (bad_type or not 1 <= self.rounds <= 16):
            raise ValueError(f"rounds must be an int in [1, 16] or None (unquantized), got {self.rounds!r}.")
        if self.temporal_stride not in (1, 2, 4):
            raise ValueError(f"temporal_stride must be 1, 2 or 4, got {self.temporal_stride}.")
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HBQTokenizerConfig:
        """Build a config from a named preset in :data:`HBQ_TOKENIZER_PRESETS`, with overrides."""
        if name not in HBQ_TOKENIZER_PRESETS:
            raise ValueError(
                f"unknown HBQ tokenizer preset {name!r}; known presets: {sorted(HBQ_TOKENIZER_PRESETS)}"
            )
        return cls(**{**HBQ_TOKENIZER_PRESETS[name], **overrides})


@dataclass
class HBQCodes:
    """HBQ codes of a batch of images or videos (channel-last: one latent position per GRN position).

    Attributes:
        bits: ``(B, T', H', W', C, M)`` uint8, coarse -> fine.
        indices: ``(B, T', H', W', C)`` int64 in ``[0, 2^M)``, coarsest bit most significant.
        grid: ``(T', H', W')``.
        rounds: ``M``.
    """

    bits: torch.Tensor
    indices: torch.Tensor
    grid: tuple[int, int, int]
    rounds: int

    @classmethod
    def from_bits(cls, bits: torch.Tensor) -> HBQCodes:
        """Codes from ``(B, T', H', W', C, M)`` bits."""
        bits = bits.to(torch.uint8)
        return cls(bits, bits_to_indices(bits), tuple(bits.shape[1:4]), bits.shape[-1])

    @classmethod
    def from_indices(cls, indices: torch.Tensor, rounds: int) -> HBQCodes:
        """Codes from ``(B, T', H', W', C)`` indices."""
        return cls(indices_to_bits(indices, rounds), indices.long(), tuple(indices.shape[1:4]), rounds)


@dataclass
class HBQTokenizerOutput(ModelOutput):
    """Output of :meth:`HBQTokenizer.forward` (the training path).

    Attributes:
        reconstruction: decoded pixels, the input's shape (4D for images, 5D for videos), not clamped.
        latents: ``tanh`` latents ``(B, C, T', H', W')``.
        quantized: decoder input ``(B, C, T', H', W')``: HBQ values with the straight-through
            gradient, or ``latents`` itself for the unquantized twin.
        bits: ``(B, T', H', W', C, M)`` uint8, or ``None`` for the unquantized twin.
    """

    reconstruction: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    quantized: torch.Tensor | None = None
    bits: torch.Tensor | None = None


def _nearest_multiples(value: int, step: int, offset: int = 0) -> str:
    below = offset + max((value - offset) // step, 0) * step
    above = below + step if below < value else below
    options = sorted({v for v in (below, above) if v >= max(offset, 1)})
    return " or ".join(str(v) for v in options)


class HBQTokenizer(PreTrainedModel):
    """Pixels <-> HBQ codes (GRN paper Sec. 3.1).

    ``encode`` gives :class:`HBQCodes`, ``decode`` takes codes, bits or indices and returns
    ``(B, 3, T, H, W)`` pixels clamped to [-1, 1] (``decode_image`` returns ``(B, 3, H, W)``).
    ``forward`` is the training path (straight-through estimator, no clamping). Encoding and
    decoding can run in causal chunks (``chunk_frames``) so long videos need not fit at once.
    """

    config_class = HBQTokenizerConfig
    base_model_prefix = "hbq_tokenizer"
    main_input_name = "pixels"

    # Pixel values farther than this outside [-1, 1] are an error (resampling may overshoot a little).
    PIXEL_RANGE_TOLERANCE = 0.1

    def __init__(self, config: HBQTokenizerConfig) -> None:
        super().__init__(config)
        self.vae = CausalVAE(
            in_channels=config.in_channels,
            latent_channels=config.latent_channels,
            base_channels=config.base_channels,
            decoder_base_channels=config.decoder_base_channels,
            channel_multipliers=config.channel_multipliers,
            num_res_blocks=config.num_res_blocks,
            spatial_stride=config.spatial_stride,
            temporal_stride=config.temporal_stride,
            patch_size=config.patch_size,
            use_attention=config.use_attention,
            spatial_padding=config.spatial_padding,
            resample_shortcut=config.resample_shortcut,
            dropout=config.dropout,
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default conv/linear init (the HF default, N(0, 0.02), is too small for deep convnets).
        if isinstance(module, ZeroLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, RMSNorm3d):
            init.ones_(module.weight)

    @property
    def last_decoder_layer(self) -> nn.Parameter:
        """Weight of the decoder's final convolution, for the adaptive GAN weight."""
        return self.vae.last_layer

    # ----------------------------------------------------------------------------- validation

    def _check_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Validate pixels and return them as ``(B, C_in, T, H, W)``."""
        c_in, s_t, s = self.config.in_channels, self.config.temporal_stride, self.config.spatial_stride
        form = f"(B, {c_in}, H, W) images or (B, {c_in}, T, H, W) videos"
        if not torch.is_tensor(pixels):
            raise ValueError(f"pixels must be a torch.Tensor of {form}, got {type(pixels).__name__}.")
        if not pixels.is_floating_point():
            raise ValueError(
                f"pixels must be float in [-1, 1], got dtype {pixels.dtype}; "
                "convert uint8 images with `pixels.float() / 127.5 - 1`."
            )
        if pixels.dim() not in (4, 5):
            hint = " (add a batch dimension with pixels.unsqueeze(0))" if pixels.dim() == 3 else ""
            raise ValueError(f"pixels must be {form}; got shape {tuple(pixels.shape)}{hint}.")
        video = pixels if pixels.dim() == 5 else pixels.unsqueeze(2)  # (B, C, T, H, W)
        if video.shape[1] != c_in:
            hint = (
                " (channels last? move them with pixels.movedim(-1, 1))" if pixels.shape[-1] == c_in else ""
            )
            raise ValueError(f"pixels must be {form}; got shape {tuple(pixels.shape)}{hint}.")
        frames, height, width = video.shape[2:]
        for name, size in (("height", height), ("width", width)):
            if size % s:
                raise ValueError(
                    f"pixel {name} {size} is not divisible by the spatial stride {s}; nearest valid "
                    f"{name}s: {_nearest_multiples(size, s)} (resize, crop or pad)."
                )
        if (frames - 1) % s_t:
            raise ValueError(
                f"frame count {frames} is not of the form 1 + {s_t}k (temporal stride {s_t}); nearest "
                f"valid counts: {_nearest_multiples(frames, s_t, offset=1)}."
            )
        self._check_range(pixels)
        return video

    def _check_range(self, pixels: torch.Tensor) -> None:
        if pixels.numel() == 0:
            return
        if not torch.isfinite(pixels).all():
            raise ValueError("pixels contain NaN or infinite values.")
        lo, hi = pixels.min().item(), pixels.max().item()
        if lo < -1 - self.PIXEL_RANGE_TOLERANCE or hi > 1 + self.PIXEL_RANGE_TOLERANCE:
            hint = " They look like [0, 255] values: use `pixels / 127.5 - 1`." if hi > 2 else ""
            raise ValueError(f"pixels must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}].{hint}")

    def _check_chunk_frames(self, chunk_frames: int | None) -> None:
        s_t = self.config.temporal_stride
        if chunk_frames is not None and (chunk_frames < 1 or chunk_frames % s_t):
            raise ValueError(
                f"chunk_frames must be None (one pass) or a positive multiple of the temporal stride "
                f"{s_t} (frames per chunk after the first frame), got {chunk_frames}."
            )

    def _require_rounds(self, what: str) -> int:
        if self.config.rounds is None:
            raise ValueError(
                f"{what} needs HBQ codes, but this tokenizer is the unquantized twin (rounds=None); "
                "use encode_latents / decode_latents instead."
            )
        return self.config.rounds

    def _codes_to_bits(self, codes: HBQCodes | torch.Tensor) -> torch.Tensor:
        """Codes, bits or indices -> ``(B, T', H', W', C, M)`` bits."""
        rounds = self._require_rounds("decode")
        c = self.config.latent_channels
        bits_form = f"bits (B, T', H', W', {c}, {rounds}) / (B, H', W', {c}, {rounds}) as uint8 or bool"
        idx_form = f"indices (B, T', H', W', {c}) / (B, H', W', {c}) as int64"
        if isinstance(codes, HBQCodes):
            codes = codes.bits
        if not torch.is_tensor(codes) or codes.is_floating_point():
            kind = codes.dtype if torch.is_tensor(codes) else type(codes).__name__
            raise ValueError(
                f"decode takes HBQCodes, {bits_form}, or {idx_form}; got {kind}. "
                "For continuous latents (B, C, T', H', W') use decode_latents."
            )
        if codes.dtype in (torch.uint8, torch.bool):
            if codes.dim() not in (5, 6) or tuple(codes.shape[-2:]) != (c, rounds):
                raise ValueError(f"decode expects {bits_form}; got shape {tuple(codes.shape)}.")
            bits = codes.to(torch.uint8)
        else:
            if codes.dim() not in (4, 5) or codes.shape[-1] != c:
                raise ValueError(f"decode expects {idx_form}; got shape {tuple(codes.shape)}.")
            bits = indices_to_bits(codes, rounds)
        return bits if bits.dim() == 6 else bits.unsqueeze(1)  # (B, T', H', W', C, M)

    # ----------------------------------------------------------------------------- public API

    def encode_latents(self, pixels: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Pixels -> ``tanh`` latents ``(B, C, T', H', W')`` in (-1, 1), differentiable.

        Args:
            pixels: float in [-1, 1], ``(B, 3, T, H, W)`` or ``(B, 3, H, W)``.
            chunk_frames: ``None`` for one pass, else frame 0 alone then chunks of this many
                frames (a multiple of the temporal stride) through a causal cache.
        """
        video = self._check_pixels(pixels)
        self._check_chunk_frames(chunk_frames)
        return torch.tanh(self.vae.encode(video, chunk_frames))

    def quantize_latents(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HBQ with the straight-through estimator.

        Returns:
            ``(quantized, bits)``: ``quantized`` is ``(B, C, T', H', W')`` with the identity
            gradient; ``bits`` is ``(B, T', H', W', C, M)`` uint8.
        """
        rounds = self._require_rounds("quantize_latents")
        channel_last = rearrange(latents, "b c t h w -> b t h w c")
        quantized, bits = quantize_ste(channel_last, rounds)  # (B, T', H', W', C), (..., C, M)
        return rearrange(quantized, "b t h w c -> b c t h w"), bits

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, chunk_frames: int | None = None) -> HBQCodes:
        """Pixels -> :class:`HBQCodes` (see :meth:`encode_latents` for the arguments)."""
        self._require_rounds("encode")
        _, bits = self.quantize_latents(self.encode_latents(pixels, chunk_frames))
        logger.debug("encoded %s pixels to a %s grid of codes", tuple(pixels.shape), tuple(bits.shape[1:4]))
        return HBQCodes.from_bits(bits)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Continuous latents ``(B, C, T', H', W')`` -> pixels ``(B, 3, T, H, W)`` clamped to [-1, 1].

        ``chunk_frames`` counts output frames per chunk after the first (a multiple of the
        temporal stride; ``temporal_stride`` itself decodes one latent frame at a time).
        """
        c = self.config.latent_channels
        if not torch.is_tensor(latents) or latents.dim() != 5 or latents.shape[1] != c:
            shape = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"latents must be (B, {c}, T', H', W') floats, got {shape}.")
        self._check_chunk_frames(chunk_frames)
        return self.vae.decode(latents.to(self.dtype), chunk_frames).clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, codes: HBQCodes | torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """HBQ codes -> pixels ``(B, 3, T, H, W)`` in [-1, 1] (5D also for images, ``T = 1``).

        Args:
            codes: :class:`HBQCodes`; bits ``(B, T', H', W', C, M)`` uint8/bool; or indices
                ``(B, T', H', W', C)`` int64. Image codes without the ``T'`` axis are accepted.
            chunk_frames: see :meth:`decode_latents`.
        """
        bits = self._codes_to_bits(codes)
        values = dequantize(bits, dtype=self.dtype)  # (B, T', H', W', C)
        return self.decode_latents(rearrange(values, "b t h w c -> b c t h w"), chunk_frames)

    def decode_image(self, codes: HBQCodes | torch.Tensor) -> torch.Tensor:
        """Like :meth:`decode` for one-frame codes; returns ``(B, 3, H, W)``."""
        pixels = self.decode(codes)
        if pixels.shape[2] != 1:
            raise ValueError(f"decode_image needs codes with one latent frame, got {pixels.shape[2]} frames.")
        return pixels[:, :, 0]

    def fingerprint(self) -> str:
        """A stable sha256 (hex) of this tokenizer: its own config fields + every state-dict tensor.

        Tensors are hashed by sorted name with dtype, shape and raw bytes, so a ``save_pretrained`` /
        ``from_pretrained`` round trip keeps the fingerprint, and any change of weights or
        architecture changes it. Generic ``PretrainedConfig`` fields (transformers version, dtype
        bookkeeping, ...) are left out so the value is stable across transformers releases. Exported
        codes and token caches record it, and decoding with another tokenizer is refused.
        """
        base = {f.name for f in dataclasses.fields(PreTrainedConfig)}
        own = {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(type(self.config))
            if f.name not in base
        }
        digest = hashlib.sha256(b"unified_grn.hbq_fingerprint/1\n")
        digest.update(json.dumps({"model_type": self.config.model_type, **own}, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"\n{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def forward(self, pixels: torch.Tensor, chunk_frames: int | None = None) -> HBQTokenizerOutput:
        """Training path: encode, ``tanh``, HBQ with the straight-through estimator, decode."""
        latents = self.encode_latents(pixels, chunk_frames)
        if self.config.rounds is None:
            quantized, bits = latents, None
        else:
            quantized, bits = self.quantize_latents(latents)
        reconstruction = self.vae.decode(quantized, chunk_frames)  # (B, 3, T, H, W)
        if pixels.dim() == 4:
            reconstruction = reconstruction[:, :, 0]
        return HBQTokenizerOutput(
            reconstruction=reconstruction, latents=latents, quantized=quantized, bits=bits
        )
