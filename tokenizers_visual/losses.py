"""Training loss of the HBQ visual tokenizer (GRN paper Sec. 3.1 "training loss", Sec. 4.1).

The generator (tokenizer) objective is a weighted sum of

* pixel reconstruction: L1 (and optionally L2) between input and reconstruction;
* LPIPS (Zhang et al., 2018; :mod:`tokenizers_visual.lpips`);
* a GAN term ``-mean(D(fake))`` from a PatchGAN discriminator (Isola et al., 2017, "Image-to-Image
  Translation with Conditional Adversarial Networks"), applied to every frame of a video, as the
  official recipe does (``gan_image4video``).

The discriminator is trained with the hinge loss. The GAN term can be rescaled by the adaptive
weight of VQGAN (Esser et al., 2021, "Taming Transformers", Eq. 7):
``||grad_L nll|| / (||grad_L g|| + 1e-4)`` at the decoder's last layer ``L``, clamped and
detached, so the adversarial gradient stays commensurate with the reconstruction gradient. The
official GRN recipe uses a fixed weight (``adaptive_gan_weight=False``); small models trained
from scratch on CPU are more stable with the adaptive one. Before ``disc_start_step`` neither the
GAN term nor the discriminator update is active.

Loss weights (reconstruction / perceptual / GAN) reported by the paper: 1.0 / 1.0 / 0.3 for the
image-only tokenizer and 1.0 / 0.2 / 0.005 for the joint image-video one
(:data:`LOSS_PRESETS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .lpips import build_lpips

__all__ = [
    "LOSS_PRESETS",
    "NLayerDiscriminator",
    "TokenizerLoss",
    "TokenizerLossConfig",
    "adaptive_gan_weight",
    "hinge_d_loss",
]


@dataclass
class TokenizerLossConfig:
    """Weights and discriminator settings of the tokenizer loss.

    Attributes:
        l1_weight: weight of the L1 reconstruction loss (paper: 1.0).
        l2_weight: weight of an extra L2 (MSE) reconstruction loss (paper: 0).
        perceptual_weight: LPIPS weight (paper: 1.0 image, 0.2 joint). 0 skips building LPIPS.
        gan_weight: weight of the generator's GAN term (paper: 0.3 image, 0.005 joint). 0 skips
            building the discriminator.
        disc_start_step: first step at which the GAN term and the discriminator update are on.
        adaptive_gan_weight: multiply ``gan_weight`` by the VQGAN adaptive weight.
        adaptive_weight_max: clamp of the adaptive weight.
        disc_weight: weight of the discriminator's hinge loss.
        disc_channels: channels of the first discriminator conv (doubled per layer, at most x8).
        disc_layers: number of stride-2 convs in the PatchGAN (receptive field grows with it).
        disc_lr_mult: discriminator learning rate = generator lr x this.
        lpips_backbone: local torchvision ``vgg16`` weights file; None = random backbone.
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.3
    disc_start_step: int = 0
    adaptive_gan_weight: bool = False
    adaptive_weight_max: float = 1.0e4
    disc_weight: float = 1.0
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr_mult: float = 1.0
    lpips_backbone: str | None = None


PAPER_IMAGE_LOSS = TokenizerLossConfig(l1_weight=1.0, perceptual_weight=1.0, gan_weight=0.3)
PAPER_IMAGE_VIDEO_LOSS = TokenizerLossConfig(l1_weight=1.0, perceptual_weight=0.2, gan_weight=0.005)
LOSS_PRESETS: dict[str, TokenizerLossConfig] = {
    "paper-image": PAPER_IMAGE_LOSS,
    "paper-image-video": PAPER_IMAGE_VIDEO_LOSS,
}


def _frames(x: torch.Tensor) -> torch.Tensor:
    """Images stay ``(B, 3, H, W)``; videos become a batch of frames ``(B*T, 3, H, W)``."""
    if x.dim() == 5:
        return rearrange(x, "b c t h w -> (b t) c h w")
    return x


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al., 2017; the VQGAN variant): one logit per patch.

    ``disc_layers`` stride-2 4x4 convs, then a stride-1 conv and a 1-channel head. GroupNorm
    replaces the original BatchNorm so the logits do not depend on the batch composition (real
    and fake batches are scored separately, and data-parallel ranks see different batches).
    Videos are scored frame by frame.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"disc_layers must be >= 1, got {layers}.")
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for n in range(1, layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < layers else 1
            mods += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), _group_norm(out), nn.LeakyReLU(0.2)]
            ch = out
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():  # VQGAN's init: N(0, 0.02) convs
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` or ``(B, 3, T, H, W)`` -> patch logits ``(B[*T], 1, h, w)``."""
        return self.net(_frames(pixels))


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: ``0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))))``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(
    nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1.0e4
) -> torch.Tensor:
    """VQGAN adaptive weight ``||grad nll|| / (||grad g|| + 1e-4)`` at ``last_layer``, clamped, detached.

    Both gradients are taken with ``torch.autograd.grad`` (nothing is accumulated into ``.grad``),
    and the graph is kept for the real backward pass.
    """
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (g_grad.norm() + 1.0e-4)
    return weight.clamp(0.0, max_weight).detach()


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No parameter grads for ``module`` inside the block (gradients still flow to its inputs)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class TokenizerLoss(nn.Module):
    """Generator and discriminator objectives of the tokenizer; owns the discriminator and LPIPS.

    Pixels are float in [-1, 1], ``(B, 3, H, W)`` or ``(B, 3, T, H, W)``. LPIPS is built only when
    ``perceptual_weight > 0`` and the discriminator only when ``gan_weight > 0``. LPIPS is frozen;
    a checkpoint needs only ``discriminator.state_dict()``.
    """

    def __init__(self, config: TokenizerLossConfig) -> None:
        super().__init__()
        self.config = replace(config)
        self.lpips = build_lpips(config.lpips_backbone) if config.perceptual_weight > 0 else None
        self.discriminator = (
            NLayerDiscriminator(channels=config.disc_channels, layers=config.disc_layers)
            if config.gan_weight > 0
            else None
        )

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.disc_start_step

    def reconstruction_loss(
        self, inputs: torch.Tensor, reconstruction: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        """The non-adversarial part ("nll" in VQGAN): weighted L1 + L2 + LPIPS, and its logs."""
        cfg = self.config
        l1 = (reconstruction - inputs).abs().mean()
        nll = cfg.l1_weight * l1
        logs = {"loss/l1": l1.item()}
        if cfg.l2_weight > 0:
            l2 = (reconstruction - inputs).pow(2).mean()
            nll = nll + cfg.l2_weight * l2
            logs["loss/l2"] = l2.item()
        if self.lpips is not None:
            p = self.lpips(reconstruction, inputs).mean()
            nll = nll + cfg.perceptual_weight * p
            logs["loss/lpips"] = p.item()
        logs["loss/nll"] = nll.item()
        return nll, logs

    def generator_loss(
        self,
        inputs: torch.Tensor,
        reconstruction: torch.Tensor,
        step: int,
        last_layer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total tokenizer loss at ``step`` and a dict of float logs.

        Args:
            inputs, reconstruction: pixels in [-1, 1], same shape.
            step: the optimizer step (decides whether the GAN term is on).
            last_layer: the decoder's last weight; required when ``adaptive_gan_weight`` is on.
        """
        nll, logs = self.reconstruction_loss(inputs, reconstruction)
        if not self.gan_active(step):
            logs["loss/total"] = nll.item()
            return nll, logs
        with _frozen(self.discriminator):
            g_loss = -self.discriminator(reconstruction).mean()
        weight = torch.ones((), device=nll.device)
        if self.config.adaptive_gan_weight:
            if last_layer is None:
                raise ValueError(
                    "adaptive_gan_weight needs the decoder's last layer (HBQTokenizer.last_decoder_layer)."
                )
            if torch.is_grad_enabled():
                weight = adaptive_gan_weight(nll, g_loss, last_layer, self.config.adaptive_weight_max)
        total = nll + self.config.gan_weight * weight * g_loss
        logs.update(
            {"loss/g": g_loss.item(), "gan/adaptive_weight": weight.item(), "loss/total": total.item()}
        )
        return total, logs

    def discriminator_loss(
        self, inputs: torch.Tensor, reconstruction: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss of the discriminator (reconstruction detached). Zero before ``disc_start_step``."""
        if not self.gan_active(step):
            zero = torch.zeros((), device=inputs.device)
            return zero, {"loss/d": 0.0}
        logits_real = self.discriminator(inputs.detach())
        logits_fake = self.discriminator(reconstruction.detach())
        loss = self.config.disc_weight * hinge_d_loss(logits_real, logits_fake)
        logs = {
            "loss/d": loss.item(),
            "d/logits_real": logits_real.mean().item(),
            "d/logits_fake": logits_fake.mean().item(),
        }
        return loss, logs
