"""PSNR / SSIM: hand-computed cases, known properties, and an optional scikit-image cross-check."""

from __future__ import annotations

import math

import pytest
import torch

from tokenizers_visual.metrics import SSIM_K1, SSIM_K2, psnr, ssim


def _rand(shape, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_hand_computed():
    x = torch.zeros(1, 3, 16, 16)
    assert psnr(x, x + 0.1, (0.0, 1.0)).item() == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    # The same error on the [-1, 1] scale is half as large relative to the range: +6.02 dB.
    assert psnr(x, x + 0.1, (-1.0, 1.0)).item() == pytest.approx(20.0 + 20 * math.log10(2), abs=1e-5)


def test_ssim_hand_computed_constant_images():
    # Constant images: zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b, rng = 0.2, 0.6, 1.0
    c1 = (SSIM_K1 * rng) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(torch.full((2, 3, 16, 16), a), torch.full((2, 3, 16, 16), b), (0.0, rng))
    assert torch.allclose(got, torch.full((2,), expected, dtype=torch.float64), atol=1e-7)
    assert SSIM_K2 == 0.03


def test_identical_inputs():
    x = _rand((2, 3, 16, 16), 0)
    assert torch.isinf(psnr(x, x, (0.0, 1.0))).all()
    assert torch.allclose(ssim(x, x, (0.0, 1.0)), torch.ones(2, dtype=torch.float64))


def test_symmetric_and_batched():
    x, y = _rand((3, 3, 20, 24), 0), _rand((3, 3, 20, 24), 1)
    assert torch.allclose(psnr(x, y, (0.0, 1.0)), psnr(y, x, (0.0, 1.0)))
    assert torch.allclose(ssim(x, y, (0.0, 1.0)), ssim(y, x, (0.0, 1.0)))
    single = torch.cat([ssim(x[i : i + 1], y[i : i + 1], (0.0, 1.0)) for i in range(3)])
    assert torch.allclose(ssim(x, y, (0.0, 1.0)), single)


def test_worse_with_more_noise():
    x = _rand((2, 3, 32, 32), 0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    p = [psnr(x, x + s * noise, (0.0, 1.0)).mean().item() for s in (0.01, 0.05, 0.2)]
    s = [ssim(x, x + s * noise, (0.0, 1.0)).mean().item() for s in (0.01, 0.05, 0.2)]
    assert p[0] > p[1] > p[2]
    assert s[0] > s[1] > s[2]


def test_video_is_mean_over_frames():
    x, y = _rand((2, 3, 3, 16, 16), 0), _rand((2, 3, 3, 16, 16), 1)
    for fn in (psnr, ssim):
        frames = torch.stack([fn(x[:, :, t], y[:, :, t], (0.0, 1.0)) for t in range(3)], dim=1).mean(dim=1)
        assert torch.allclose(fn(x, y, (0.0, 1.0)), frames)


def test_range_convention_is_consistent():
    # SSIM is not shift-invariant: [-1, 1] pixels are mapped to [0, 2] before scoring.
    x, y = _rand((1, 3, 16, 16), 0), _rand((1, 3, 16, 16), 1)
    assert torch.allclose(psnr(x, y, (0.0, 1.0)), psnr(2 * x - 1, 2 * y - 1, (-1.0, 1.0)))
    assert torch.allclose(ssim(x, y, (0.0, 1.0)), ssim(2 * x - 1, 2 * y - 1, (-1.0, 1.0)))


def test_bad_inputs():
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x, x, (0.0, 1.0))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, torch.zeros(1, 3, 8, 9), (0.0, 1.0))
    with pytest.raises(ValueError, match="value_range"):
        psnr(x, x, (1.0, 1.0))


def test_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed; cross-check skipped")
    x, y = _rand((1, 3, 24, 28), 0), _rand((1, 3, 24, 28), 1)
    y = (0.7 * x + 0.3 * y).clamp(0, 1)
    ref = skm.structural_similarity(
        x[0].numpy(),
        y[0].numpy(),
        data_range=1.0,
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(x, y, (0.0, 1.0)).item() == pytest.approx(ref, abs=1e-6)
    assert psnr(x, y, (0.0, 1.0)).item() == pytest.approx(
        skm.peak_signal_noise_ratio(x[0].numpy(), y[0].numpy(), data_range=1.0), abs=1e-4
    )
