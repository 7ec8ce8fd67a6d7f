"""GRNProcessor: pixels <-> [-1, 1] tensors both ways, video files (unified_grn/processing_grn.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unified_grn import GRNConfig, GRNForConditionalGeneration, GRNProcessor
from unified_grn.processing_grn import load_video
from unified_grn.utils.import_utils import is_av_available


@pytest.fixture(scope="module")
def processor() -> GRNProcessor:
    model = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-shapes"))
    return model.processor


def _image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pil_numpy_and_torch_inputs_agree(processor):
    array = _image()
    as_pil = processor.preprocess_images(Image.fromarray(array))
    as_np = processor.preprocess_images(array)
    as_float = processor.preprocess_images(array.astype(np.float32) / 255)
    as_uint8_tensor = processor.preprocess_images(torch.from_numpy(array).permute(2, 0, 1))
    as_tensor = processor.preprocess_images(as_np[0])  # (3, H, W) in [-1, 1]
    assert as_pil.shape == (1, 3, 64, 64) and as_pil.dtype == torch.float32
    assert float(as_pil.min()) >= -1 and float(as_pil.max()) <= 1
    for other in (as_np, as_float, as_uint8_tensor, as_tensor):
        torch.testing.assert_close(other, as_pil, atol=1e-6, rtol=0)


def test_resize_and_centre_crop_to_the_configured_size(processor):
    batch = processor.preprocess_images([_image(96, 128), Image.fromarray(_image(32, 32)).convert("L")])
    assert batch.shape == (2, 3, 64, 64)
    assert processor.preprocess_images(_image(), height=32, width=48).shape == (1, 3, 32, 48)


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_postprocess_round_trips(processor, output_type):
    pixels = processor.preprocess_images([_image(seed=1), _image(seed=2)])
    out = processor.postprocess(pixels, output_type=output_type)
    if output_type == "pil":
        assert len(out) == 2 and out[0].size == (64, 64)
    back = processor.preprocess_images(list(out) if output_type != "pt" else [p * 2 - 1 for p in out])
    torch.testing.assert_close(back, pixels, atol=1.5 / 255, rtol=0)


def test_video_frames_layout_and_frame_count(processor):
    frames = np.stack([_image(seed=i) for i in range(9)])  # (T, H, W, 3)
    video = processor.preprocess_videos(frames)
    assert video.shape == (1, 3, 9, 64, 64)
    again = processor.preprocess_videos([video[0], list(frames)])  # (3, T, H, W) tensor and a frame list
    torch.testing.assert_close(again[0], video[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(again[1], video[0], atol=1e-6, rtol=0)
    clips = processor.postprocess(video, output_type="pil")
    assert len(clips) == 1 and len(clips[0]) == 9
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        processor.preprocess_videos(frames[:7])
    assert processor.preprocess_videos(frames[:7], trim_frames=True).shape[2] == 5


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_video_files_round_trip(processor, tmp_path, suffix):
    if suffix == ".mp4" and not is_av_available():
        pytest.skip("writing mp4 needs PyAV (pip install av)")
    flat = np.zeros((5, 64, 64, 3), dtype=np.uint8)
    for t in range(5):
        flat[t, :, :, t % 3] = 200  # plain colours survive both codecs
    path = processor.save_video(processor.preprocess_videos(flat)[0], tmp_path / f"clip{suffix}")
    frames = load_video(path)
    assert frames.shape == (5, 64, 64, 3)
    assert np.abs(frames.astype(int) - flat.astype(int)).mean() < 12
    assert processor.preprocess_videos(path).shape == (1, 3, 5, 64, 64)


def test_text_is_left_padded(processor):
    batch = processor(text=["a red circle", "hi"])
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()
    assert processor.decode(batch["input_ids"][0], skip_special_tokens=True) == "a red circle"


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="multiples of spatial_stride=8"):
        GRNProcessor(tokenizer=None, height=60)
