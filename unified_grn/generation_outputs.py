"""What ``GRNForConditionalGeneration.generate`` returns: :class:`GRNGenerationOutput` and :class:`GRNVideo`.

GRN paper Alg. 3 (the sampled codes) and Sec. 3.1 (decoded by the HBQ visual tokenizer). Pixels
follow the processor's convention (``processing_grn.GRNProcessor.postprocess``): PIL images,
uint8 ``numpy`` arrays or float ``[0, 1]`` tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tokenizers_visual.modeling_hbq import HBQCodes
from unified_grn.processing_grn import save_video
from unified_grn.refinement_config import RefinementStats

__all__ = ["GRNGenerationOutput", "GRNVideo"]


@dataclass
class GRNVideo:
    """One generated video: its frames as PIL images and a frame rate.

    ``len(video)`` is the frame count, ``video[i]`` a frame, ``video.numpy()`` the ``(T, H, W, 3)``
    uint8 array; ``video.save("clip.mp4")`` (PyAV) or ``video.save("clip.gif")`` (Pillow) writes it.
    """

    frames: list[Image.Image]
    fps: int = 8

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Image.Image:
        return self.frames[index]

    def __iter__(self) -> Iterator[Image.Image]:
        return iter(self.frames)

    def numpy(self) -> np.ndarray:
        """``(T, H, W, 3)`` uint8."""
        return np.stack([np.asarray(f.convert("RGB")) for f in self.frames])

    def save(self, path: str | Path, fps: int | None = None) -> Path:
        """Write ``.mp4`` (PyAV, mpeg4) or ``.gif`` (Pillow); returns the path."""
        return save_video(self.numpy(), path, fps or self.fps)


@dataclass
class GRNGenerationOutput:
    """Output of ``generate``; fields that do not apply to the modality are ``None``.

    Attributes:
        images: image modality: a list of PIL images (``output_type="pil"``), a uint8 array
            ``(B, H, W, 3)`` (``"np"``) or a float ``[0, 1]`` tensor ``(B, 3, H, W)`` (``"pt"``).
        videos: video modality: a list of :class:`GRNVideo` (``"pil"``), a uint8 array
            ``(B, T, H, W, 3)`` (``"np"``) or a float ``[0, 1]`` tensor ``(B, 3, T, H, W)`` (``"pt"``).
        codes: the sampled :class:`~tokenizers_visual.modeling_hbq.HBQCodes`, grid ``(T', H', W')``,
            one row per sample (prompt-major: prompt ``i // n``, copy ``i % n``).
        stats: the sampler's per-step :class:`~unified_grn.refinement_config.RefinementStats`.
        text: text modality: the decoded continuations (special tokens skipped).
        sequences: text modality: the generated ids ``(B, new_tokens)`` (prompt left out).
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor | None = None
    videos: list[GRNVideo] | np.ndarray | torch.Tensor | None = None
    codes: HBQCodes | None = None
    stats: RefinementStats | None = None
    text: list[str] | None = None
    sequences: torch.Tensor | None = None
