"""The reconstruction summary reuses tokenizers_visual's metrics and flags an uncalibrated LPIPS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenizers_visual.lpips import VGG16LPIPS
from tokenizers_visual.metrics import psnr
from unified_grn.data import moving_shapes as ms
from unified_grn.data import shapes as sh
from unified_grn.eval.reconstruction import reconstruction_metrics, to_unit_tensor


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [np.asarray(sh.make_shapes_example(0, i)["image"]) for i in range(4)]


def test_identical_noisy_and_blank(images):
    rng = np.random.default_rng(0)
    noisy = [np.clip(im + rng.normal(0, 10, im.shape), 0, 255).astype(np.uint8) for im in images]
    same = reconstruction_metrics(images, images, lpips=False)
    assert same.psnr == float("inf") and same.ssim == pytest.approx(1.0) and same.lpips is None
    r = reconstruction_metrics(images, noisy, lpips=False)
    x, y = to_unit_tensor(images), to_unit_tensor(noisy)
    assert r.psnr == pytest.approx(float(psnr(x, y, (0.0, 1.0)).mean()))  # the shared implementation
    assert 25 < r.psnr < 35 and r.ssim < 1.0 and r.n == 4
    noisier = [np.clip(im + rng.normal(0, 40, im.shape), 0, 255).astype(np.uint8) for im in images]
    worse = reconstruction_metrics(images, noisier, lpips=False)
    assert worse.psnr < r.psnr and worse.ssim < r.ssim
    blank = reconstruction_metrics(images, [np.full_like(im, 128) for im in images], lpips=False)
    assert blank.psnr < worse.psnr


def test_layouts_agree(images):
    as_float = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, H, W)
    noisy = (as_float + 0.05 * torch.randn(as_float.shape, generator=torch.Generator().manual_seed(0))).clamp(
        -1, 1
    )
    a = reconstruction_metrics(as_float, noisy, value_range=(-1.0, 1.0), lpips=False)
    b = reconstruction_metrics(
        ((as_float + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
        ((noisy + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
        lpips=False,
    )
    assert a.psnr == pytest.approx(b.psnr, abs=0.1)
    video = ms.make_moving_shapes_example(0, 0, num_frames=5)["video"]  # (T, H, W, 3)
    v = reconstruction_metrics([video], [np.roll(video, 1, axis=0)], lpips=False)
    assert to_unit_tensor([video]).shape == (1, 3, 5, 64, 64) and v.psnr < 40


def test_lpips_carries_the_uncalibrated_flag(images):
    model = VGG16LPIPS()  # no backbone weights here: random, seeded
    rng = np.random.default_rng(0)
    noisy = [np.clip(im + rng.normal(0, 25, im.shape), 0, 255).astype(np.uint8) for im in images]
    r = reconstruction_metrics(images, noisy, lpips=model)
    same = reconstruction_metrics(images, images, lpips=model)
    assert r.lpips > same.lpips >= 0 and same.lpips == pytest.approx(0.0, abs=1e-6)
    assert r.lpips_calibrated is False and r.lpips_note.startswith("uncalibrated: random VGG backbone")
    assert r.to_dict()["lpips_note"] == r.lpips_note
