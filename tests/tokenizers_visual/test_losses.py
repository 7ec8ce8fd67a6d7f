"""Tokenizer loss (GRN Sec. 3.1): hinge losses, PatchGAN, adaptive GAN weight, start step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokenizers_visual.losses import (
    LOSS_PRESETS,
    NLayerDiscriminator,
    TokenizerLoss,
    TokenizerLossConfig,
    adaptive_gan_weight,
    hinge_d_loss,
)


def test_paper_presets():
    image, joint = LOSS_PRESETS["paper-image"], LOSS_PRESETS["paper-image-video"]
    assert (image.l1_weight, image.perceptual_weight, image.gan_weight) == (1.0, 1.0, 0.3)
    assert (joint.l1_weight, joint.perceptual_weight, joint.gan_weight) == (1.0, 0.2, 0.005)


def test_hinge_loss_on_constructed_logits():
    # Confident and correct: no loss. Real below margin / fake above: linear penalty.
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -3.0)).item() == 0.0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(1.0)
    assert hinge_d_loss(torch.tensor([0.5, 3.0]), torch.tensor([1.0, -2.0])).item() == pytest.approx(
        0.5 * (0.25 + 1.0)
    )


def test_patchgan_shapes_images_and_video_frames():
    d = NLayerDiscriminator(channels=8, layers=2)
    assert d(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 6, 6)
    assert d(torch.zeros(2, 3, 5, 32, 32)).shape == (10, 1, 6, 6)


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.out(torch.relu(self.body(x))))


def _setup(**kw):
    torch.manual_seed(0)
    cfg = TokenizerLossConfig(perceptual_weight=0.0, disc_channels=8, disc_layers=2, **kw)
    dec = _Decoder()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    return TokenizerLoss(cfg), dec, x


def test_adaptive_weight_finite_positive_and_leaves_grads_alone():
    loss_fn, dec, x = _setup()
    rec = dec(x)
    nll, _ = loss_fn.reconstruction_loss(x, rec)
    g = -loss_fn.discriminator(rec).mean()
    w = adaptive_gan_weight(nll, g, dec.out.weight)
    assert torch.isfinite(w) and w.item() > 0 and not w.requires_grad
    assert dec.out.weight.grad is None  # autograd.grad accumulates nothing
    assert adaptive_gan_weight(nll, g, dec.out.weight, max_weight=1e-3).item() == pytest.approx(1e-3)


def test_generator_loss_gan_term_and_start_step():
    loss_fn, dec, x = _setup(gan_weight=0.5, disc_start_step=10, adaptive_gan_weight=True)
    rec = dec(x)
    before, logs = loss_fn.generator_loss(x, rec, step=9, last_layer=dec.out.weight)
    assert "loss/g" not in logs and before.item() == pytest.approx(logs["loss/nll"])
    after, logs = loss_fn.generator_loss(x, rec, step=10, last_layer=dec.out.weight)
    assert logs["gan/adaptive_weight"] > 0
    expected = logs["loss/nll"] + 0.5 * logs["gan/adaptive_weight"] * logs["loss/g"]
    assert after.item() == pytest.approx(expected, rel=1e-5)
    after.backward()
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())  # D frozen for G's loss
    assert all(p.requires_grad for p in loss_fn.discriminator.parameters())
    with pytest.raises(ValueError, match="last layer"):
        loss_fn.generator_loss(x, dec(x), step=10)


def test_discriminator_loss_and_start_step():
    loss_fn, dec, x = _setup(disc_start_step=5)
    rec = dec(x)
    zero, logs = loss_fn.discriminator_loss(x, rec, step=4)
    assert zero.item() == 0.0 and logs == {"loss/d": 0.0}
    loss, logs = loss_fn.discriminator_loss(x, rec, step=5)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0 and "d/logits_real" in logs
    assert dec.out.weight.grad is None  # the reconstruction is detached
    assert all(p.grad is not None for p in loss_fn.discriminator.parameters())


def test_components_are_built_only_when_weighted():
    loss_fn = TokenizerLoss(TokenizerLossConfig(perceptual_weight=0.0, gan_weight=0.0))
    assert loss_fn.lpips is None and loss_fn.discriminator is None and not loss_fn.gan_active(10**6)


def test_perceptual_and_l2_terms():
    torch.manual_seed(0)
    cfg = TokenizerLossConfig(l2_weight=1.0, perceptual_weight=0.5, gan_weight=0.0)
    loss_fn = TokenizerLoss(cfg)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    loss, logs = loss_fn.generator_loss(x, y, step=0)
    assert logs["loss/lpips"] > 0 and logs["loss/l2"] > 0
    assert loss.item() == pytest.approx(
        logs["loss/l1"] + logs["loss/l2"] + 0.5 * logs["loss/lpips"], rel=1e-5
    )
    loss.backward()
    assert y.grad.abs().sum() > 0
