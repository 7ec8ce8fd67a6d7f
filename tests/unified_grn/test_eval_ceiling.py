"""unified_grn.eval.ceiling: the tokenizer's ceiling on the checkers (true test codes, decoded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenizers_visual.modeling_hbq import HBQCodes, HBQTokenizer, HBQTokenizerConfig
from unified_grn.eval.ceiling import randomize_rounds, reconstruct, tokenizer_ceiling

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


class _Codec(torch.nn.Module):
    """A lossless stand-in for the tokenizer (codes = pixels); ``reverse_time`` plays clips backwards."""

    def __init__(self, reverse_time: bool = False, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=dtype))  # device / dtype carrier
        self.reverse_time = reverse_time

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        assert pixels.dtype == self.anchor.dtype and pixels.dim() == 5 and pixels.shape[1] == 3
        assert pixels.min() >= -1.0 and pixels.max() <= 1.0
        return pixels

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.flip(2) if self.reverse_time else codes


def test_reconstruct_is_exact_for_a_lossless_codec_in_its_dtype():
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 16, 16, 3), dtype=np.uint8)
    for dtype in (torch.float32, torch.float64):
        out = reconstruct(_Codec(dtype=dtype), frames)
        assert out.dtype == np.uint8 and np.array_equal(out, frames)


def test_lossless_ceiling_equals_ground_truth_and_reversed_time_fails_direction():
    report = tokenizer_ceiling(_Codec(), num_images=12, num_videos=6, batch_size=5)
    for task in ("t2i", "t2v"):
        assert report[task]["reconstructed"] == report[task]["ground_truth"]
        assert report[task]["ground_truth"]["overall"] == 1.0
    backwards = tokenizer_ceiling(_Codec(reverse_time=True), num_images=0, num_videos=6)
    assert backwards["t2i"] is None
    assert backwards["t2v"]["reconstructed"]["direction"] == 0.0
    assert backwards["t2v"]["reconstructed"]["persistence"] == 1.0  # same objects, wrong way


def test_an_untrained_tokenizer_is_far_below_the_ground_truth():
    torch.manual_seed(0)
    tokenizer = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny")).eval()
    report = tokenizer_ceiling(tokenizer, num_images=8, num_videos=2, size=32)
    assert report["t2i"]["ground_truth"]["overall"] == 1.0
    assert report["t2i"]["reconstructed"]["overall"] < 0.5
    assert report["t2v"]["reconstructed"]["overall"] < report["t2v"]["ground_truth"]["overall"]
    with pytest.raises(ValueError, match="must be >= 0"):
        tokenizer_ceiling(tokenizer, num_images=-1)


def test_evaluate_model_script_tokenizer_ceiling_only(tmp_path):
    torch.manual_seed(0)
    HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny")).save_pretrained(tmp_path / "tok")
    script = [
        sys.executable,
        str(ROOT / "scripts" / "evaluate_model.py"),
        "--tokenizer",
        str(tmp_path / "tok"),
    ]
    out = tmp_path / "ceiling.json"
    args = ["--ceiling-images", "4", "--ceiling-videos", "1", "--size", "32", "--out", str(out)]
    done = subprocess.run([*script, *args], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert (
        report["ceiling"]["t2i"]["reconstructed"]["n"] == 4
        and report["ceiling"]["t2v"]["ground_truth"]["n"] == 1
    )
    assert report["ceiling"]["exact_rounds"] is None
    coarse = subprocess.run(
        [*script, *args[:2], "--size", "32", "--ceiling-exact-rounds", "2", "--out", str(out)],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert coarse.returncode == 0, coarse.stderr
    assert json.loads(out.read_text())["ceiling"]["exact_rounds"] == 2
    refused = subprocess.run(script, capture_output=True, text=True, env=ENV)
    assert refused.returncode == 2 and "--ceiling-images" in refused.stderr


def test_randomize_rounds_keeps_the_coarse_rounds_and_redraws_the_rest():
    bits = torch.randint(
        0, 2, (6, 1, 4, 4, 16, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    codes = HBQCodes.from_bits(bits)
    for r in range(5):
        out = randomize_rounds(codes, r, torch.Generator().manual_seed(1)).bits
        assert out.dtype == torch.uint8 and out.shape == bits.shape
        assert torch.equal(out[..., :r], bits[..., :r])
        if r < 4:
            flipped = (out[..., r:] != bits[..., r:]).float().mean().item()
            assert 0.4 < flipped < 0.6  # uniform redraw: about half the bits change
        again = randomize_rounds(codes, r, torch.Generator().manual_seed(1)).bits
        assert torch.equal(out, again)  # seeded
    with pytest.raises(ValueError, match=r"exact_rounds must be in \[0, 4\]"):
        randomize_rounds(codes, 5)


def test_ceiling_with_all_rounds_exact_is_the_plain_ceiling_and_fewer_rounds_lose_detail():
    torch.manual_seed(0)
    tokenizer = HBQTokenizer(HBQTokenizerConfig.from_preset("hbq-tiny")).eval()
    frames = np.random.default_rng(0).integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8)
    plain = reconstruct(tokenizer, frames)
    assert np.array_equal(reconstruct(tokenizer, frames, exact_rounds=4), plain)
    assert not np.array_equal(
        reconstruct(tokenizer, frames, exact_rounds=1, generator=torch.Generator()), plain
    )
    report = tokenizer_ceiling(tokenizer, num_images=4, num_videos=0, size=32, exact_rounds=4)
    assert report["exact_rounds"] == 4
    assert report["t2i"] == tokenizer_ceiling(tokenizer, num_images=4, num_videos=0, size=32)["t2i"]
