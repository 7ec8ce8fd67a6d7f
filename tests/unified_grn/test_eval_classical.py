"""Classical same-bit-budget baselines: exact bit counts, PSNR monotone in the budget, JPEG byte counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenizers_visual.modeling_hbq import HBQTokenizerConfig
from unified_grn.eval import classical as cl


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Smooth random 28x28 grayscale images (blurred noise plus a bright blob), uint8."""
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.random((24, 1, 28, 28)))
    smooth = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)[:, 0].numpy()
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(-((yy - 14) ** 2 + (xx - 12) ** 2) / 40.0)
    return np.clip((smooth - smooth.min()) / np.ptp(smooth) * 120 + blob * 130, 0, 255).astype(np.uint8)


def test_bit_budgets_are_exact():
    assert cl.hbq_bit_budget((1, 4, 4), 16, 4) == 1024
    assert cl.hbq_bit_budget((8, 8), 16, 4) == 4096
    tiny = HBQTokenizerConfig.from_preset("hbq-tiny")  # stride 8, C = 16, M = 4
    assert cl.tokenizer_bit_budget(tiny, 32, 32) == 4 * 4 * 16 * 4
    assert cl.tokenizer_bit_budget(tiny, 64, 64, num_frames=9) == 3 * 8 * 8 * 16 * 4
    with pytest.raises(ValueError):
        cl.tokenizer_bit_budget(tiny, 28, 28)
    assert cl.downsample_bits(14, 4, 1) == 784 and cl.downsample_bits((9, 16), 3, 3, frames=2) == 2592


def test_downsample_code_has_its_levels(images):
    out = cl.downsample_quantize(images, 28, 1)  # full size, 1 bit: a threshold, nothing to upsample
    assert out.shape == (24, 1, 28, 28) and set(out.unique().tolist()) <= {0.0, 1.0}
    lossless = cl.downsample_quantize(images, 28, 8)  # full size at 8 bit: the image itself
    assert torch.equal((lossless[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert len(cl.downsample_quantize(images, 28, 2).unique()) <= 4  # 2 bits: at most 4 levels
    assert cl.score_pairs(images, images)[0] == float("inf")


def test_psnr_monotone_in_budget(images):
    budgets = [98, 196, 392, 784, 1568, 3136]
    results = [cl.best_downsample_baseline(images, b)[0] for b in budgets]
    assert all(r.bits <= b for r, b in zip(results, budgets))
    psnrs = [r.psnr for r in results]
    assert psnrs == sorted(psnrs) and psnrs[-1] > psnrs[0] + 5
    # for a fixed size, more bits never hurt; for a fixed depth, more pixels never hurt (smooth images)
    by_bits = [cl.score_pairs(images, cl.downsample_quantize(images, 14, b))[0] for b in (1, 2, 4, 8)]
    assert by_bits == sorted(by_bits)
    best, candidates = results[3], cl.best_downsample_baseline(images, 784)[1]
    assert best.psnr == max(c.psnr for c in candidates) and not np.isnan(best.ssim)
    assert all(cl.downsample_bits(c.params["k"], c.params["b"], 1) == c.bits <= 784 for c in candidates)


def test_jpeg_byte_counts_are_real(images):
    decoded, full, stream = cl.jpeg_roundtrip(images[:4], 50)
    assert decoded.shape == images[:4].shape and decoded.dtype == np.uint8
    assert (full > stream).all() and (full - stream > 200).all()  # the tables are hundreds of bytes
    low, high = cl.jpeg_at_budget(images, 1000), cl.jpeg_at_budget(images, 2000)
    assert low is not None and high is not None
    assert low.bits <= 1000 and high.bits <= 2000 and high.params["quality"] > low.params["quality"]
    assert high.psnr > low.psnr and high.bits_full > high.bits
    assert cl.jpeg_at_budget(images, 8) is None  # nothing fits a byte


def test_classical_baselines_rgb():
    rng = np.random.default_rng(1)
    rgb = (rng.random((6, 32, 32, 3)) * 255).astype(np.uint8)
    rows = cl.classical_baselines(rgb, 4096)
    assert rows[0].method == "downsample" and rows[0].bits <= 4096 and rows[0].params["b"] >= 1
    assert all(r.n == 6 and np.isfinite(r.psnr) for r in rows)
