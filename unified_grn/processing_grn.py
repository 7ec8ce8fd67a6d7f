"""GRNProcessor: the text tokenizer plus visual pre/post-processing, both directions.

Library-wide pixel convention (docs/CONTRACTS.md): float in [-1, 1], images ``(B, 3, H, W)``,
videos ``(B, 3, T, H, W)`` with ``T = 1 + s_t k`` (GRN paper Sec. 3.1: the tokenizer's temporal
stride ``s_t``). Inputs accepted by :meth:`GRNProcessor.preprocess_images` / ``_videos``:

* ``PIL.Image.Image`` (any mode, converted to RGB);
* ``numpy`` arrays ``(H, W, 3)`` / ``(H, W)``: uint8 in [0, 255] or float in [0, 1];
* ``torch`` tensors ``(3, H, W)``: uint8 in [0, 255] or float in [-1, 1] (the library's layout);
* videos: a list of frames of the above, a ``(T, H, W, 3)`` array, a ``(3, T, H, W)`` tensor, or
  a path to an ``.mp4`` (read with PyAV) or ``.gif`` file.

Frames are resized (shorter side) and centre-cropped to ``(height, width)``. ``postprocess`` goes
back to PIL images, uint8 arrays or [0, 1] tensors; ``save_video`` writes ``.mp4`` (PyAV) or
``.gif`` (Pillow).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, ImageSequence
from transformers import BatchFeature, ProcessorMixin

from unified_grn.utils.import_utils import is_av_available

__all__ = ["GRNProcessor", "load_video", "save_video"]


def _frame_to_tensor(frame: Any) -> torch.Tensor:
    """One image/frame -> ``(3, H, W)`` float in [0, 1]."""
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    if isinstance(frame, np.ndarray):
        array = frame[..., None].repeat(3, -1) if frame.ndim == 2 else frame
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"numpy images must be (H, W, 3) or (H, W), got shape {frame.shape}.")
        scale = 255.0 if array.dtype == np.uint8 else 1.0
        return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) / scale  # astype copies: writable
    if torch.is_tensor(frame):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise ValueError(f"torch images must be (3, H, W), got shape {tuple(frame.shape)}.")
        if frame.dtype == torch.uint8:
            return frame.float() / 255.0
        return (frame.float().clamp(-1, 1) + 1) / 2
    raise ValueError(f"unsupported image type {type(frame).__name__}; use PIL, numpy or torch.")


def _resize_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, 3, h, w)`` -> ``(N, 3, height, width)``: scale the shorter side, centre-crop."""
    h, w = frames.shape[-2:]
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return frames[..., top : top + height, left : left + width]


def load_video(path: str | Path) -> np.ndarray:
    """``.gif`` (Pillow) or any PyAV-readable file -> ``(T, H, W, 3)`` uint8."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        with Image.open(path) as gif:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])
    if not is_av_available():
        raise ImportError("reading video files needs PyAV: pip install av")
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def save_video(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames to ``.mp4`` (PyAV, mpeg4) or ``.gif`` (Pillow)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    if not is_av_available():
        raise ImportError("writing mp4 needs PyAV (pip install av); or save as .gif")
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


class GRNProcessor(ProcessorMixin):
    """Text tokenizer + pixels <-> [-1, 1] tensors (see the module docstring).

    Args:
        tokenizer: the GRN model's text tokenizer (with GRN's special tokens).
        height: output height in pixels (a multiple of ``spatial_stride``).
        width: output width in pixels.
        spatial_stride: the visual tokenizer's spatial stride.
        temporal_stride: the visual tokenizer's temporal stride (videos have ``1 + s_t k`` frames).
        fps: frame rate used when writing videos.
    """

    def __init__(
        self,
        tokenizer=None,
        height: int = 64,
        width: int = 64,
        spatial_stride: int = 8,
        temporal_stride: int = 4,
        fps: int = 8,
        chat_template: str | None = None,
    ) -> None:
        if height % spatial_stride or width % spatial_stride:
            raise ValueError(
                f"height and width must be multiples of spatial_stride={spatial_stride}, got {height}x{width}."
            )
        self.height, self.width = height, width
        self.spatial_stride, self.temporal_stride, self.fps = spatial_stride, temporal_stride, fps
        super().__init__(tokenizer, chat_template=chat_template)

    @classmethod
    def from_model(cls, model) -> GRNProcessor:
        """The processor of a GRN model (its tokenizer, default size and tokenizer strides)."""
        vt = model.config.visual_tokenizer_config
        gen = model.generation_config
        return cls(
            tokenizer=model.text_tokenizer,
            height=gen.height,
            width=gen.width,
            spatial_stride=vt.spatial_stride,
            temporal_stride=vt.temporal_stride,
        )

    def __call__(self, text=None, images=None, videos=None, **kwargs) -> BatchFeature:
        """Tokenize ``text`` (left-padded) and/or preprocess ``images`` / ``videos``."""
        data: dict[str, Any] = {}
        if text is not None:
            kwargs.setdefault("padding", True)
            self.tokenizer.padding_side = "left"
            data.update(self.tokenizer(text, return_tensors="pt", **kwargs))
        if images is not None:
            data["pixel_values"] = self.preprocess_images(images)
        if videos is not None:
            data["pixel_values_videos"] = self.preprocess_videos(videos)
        return BatchFeature(data=data)

    def _size(self, height: int | None, width: int | None) -> tuple[int, int]:
        return height or self.height, width or self.width

    def preprocess_images(
        self, images: Any, height: int | None = None, width: int | None = None
    ) -> torch.Tensor:
        """One image or a list -> ``(B, 3, H, W)`` float in [-1, 1]."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        size = self._size(height, width)
        frames = torch.cat([_resize_crop(_frame_to_tensor(im)[None], *size) for im in images])  # (B, 3, H, W)
        return frames * 2 - 1

    def _video_frames(self, video: Any) -> list[Any]:
        if isinstance(video, (str, Path)):
            video = load_video(video)
        if isinstance(video, np.ndarray) and video.ndim == 4:
            return list(video)
        if torch.is_tensor(video) and video.dim() == 4:
            return list(rearrange(video, "c t h w -> t c h w"))
        return list(video)

    def preprocess_videos(
        self, videos: Any, height: int | None = None, width: int | None = None, trim_frames: bool = False
    ) -> torch.Tensor:
        """One video or a list -> ``(B, 3, T, H, W)`` float in [-1, 1].

        ``T`` must be ``1 + temporal_stride * k``; ``trim_frames`` drops trailing frames to the
        nearest such count instead of raising.
        """
        single = isinstance(videos, (str, Path)) or (hasattr(videos, "dim") and videos.dim() == 4)
        single = single or (isinstance(videos, np.ndarray) and videos.ndim == 4)
        clips = [videos] if single else list(videos)
        out = []
        for clip in clips:
            frames = self._check_frames(self._video_frames(clip), trim_frames)
            pixels = self.preprocess_images(frames, height, width)  # (T, 3, H, W)
            out.append(rearrange(pixels, "t c h w -> c t h w"))
        return torch.stack(out)

    def _check_frames(self, frames: list[Any], trim: bool) -> list[Any]:
        s_t, count = self.temporal_stride, len(frames)
        valid = 1 + (count - 1) // s_t * s_t if count else 0
        if count == valid:
            return frames
        if trim and valid >= 1:
            return frames[:valid]
        raise ValueError(
            f"a video has {count} frames; the visual tokenizer needs 1 + {s_t}k frames "
            f"(nearest: {valid} or {valid + s_t}); pass trim_frames=True to drop the extra frames."
        )

    def postprocess(self, pixels: torch.Tensor, output_type: str = "pil"):
        """``(B, 3, H, W)`` or ``(B, 3, T, H, W)`` in [-1, 1] -> ``"pil"`` (list of images, or of
        frame lists), ``"np"`` (uint8 ``(B, [T,] H, W, 3)``) or ``"pt"`` (float [0, 1], same layout)."""
        unit = (pixels.detach().float().cpu().clamp(-1, 1) + 1) / 2
        if output_type == "pt":
            return unit
        pattern = "b c h w -> b h w c" if unit.dim() == 4 else "b c t h w -> b t h w c"
        array = (rearrange(unit, pattern) * 255).round().to(torch.uint8).numpy()
        if output_type == "np":
            return array
        if output_type != "pil":
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}.")
        if array.ndim == 4:
            return [Image.fromarray(a) for a in array]
        return [[Image.fromarray(f) for f in clip] for clip in array]

    def save_video(self, pixels: torch.Tensor | np.ndarray, path: str | Path, fps: int | None = None) -> Path:
        """Write one video (``(3, T, H, W)`` [-1, 1] tensor or ``(T, H, W, 3)`` uint8) to mp4 / gif."""
        if torch.is_tensor(pixels):
            pixels = self.postprocess(pixels[None], output_type="np")[0]
        return save_video(pixels, path, fps or self.fps)

    def apply_chat_template(
        self,
        conversation: list[dict],
        tokenize: bool = False,
        add_generation_prompt: bool = True,
        *,
        model=None,
        truncation: bool = True,
    ):
        """A conversation in the chat layout (``unified_grn.chat_format``: one definition, training's).

        Args:
            conversation: ``[{"role": "system" | "user" | "assistant", "content": str | [item, ...]}]``
                (text items and images, see ``unified_grn.chat_format``).
            tokenize: False: the text form, ``"User: ...\\nAssistant: "`` with ``<|image|>``
                (``chat_format.IMAGE_PLACEHOLDER``) for every image and the EOS token after every
                assistant message. True: the one-row ``GRNBatch`` that ``model.chat`` runs (images
                as clean HBQ blocks), oldest turns dropped to fit the backbone's context.
            add_generation_prompt: end with the new turn's ``"\\n" "Assistant: "``.
            model: the ``GRNForConditionalGeneration`` (visual tokenizer, vocabulary, context
                length); needed with ``tokenize=True``.
            truncation: with ``tokenize=True``, drop the oldest turns of a too-long conversation
                (a logged warning) or raise.

        Returns:
            The text form (``str``), or with ``tokenize=True`` a one-row ``GRNBatch``.
        """
        from unified_grn.chat import build_chat_context  # chat builds on this module
        from unified_grn.chat_format import chat_text, normalize_messages

        if not tokenize:
            return chat_text(normalize_messages(conversation), self.tokenizer, add_generation_prompt)
        if model is None:
            raise ValueError(
                "apply_chat_template(tokenize=True) lays images out as HBQ codes of the model: pass model=."
            )
        return build_chat_context(model, conversation, add_generation_prompt, truncation)[0]

    def batch_decode(self, *args, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs)
