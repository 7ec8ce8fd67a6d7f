"""LPIPS perceptual distance (Zhang et al., 2018, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric"), used by the tokenizer loss of GRN Sec. 3.1 and by its evaluation.

Two implementations behind one builder, :func:`build_lpips`:

* the ``lpips`` package (``lpips.LPIPS(net="vgg")``), used when both ``lpips`` and ``torchvision``
  import and the ImageNet VGG16 weights can be had;
* :class:`VGG16LPIPS`, a torchvision-free copy of LPIPS-VGG v0.1 written here. ``lpips`` pulls in
  torchvision, which replaces a CPU torch with a CUDA build, so on CPU machines the package is
  installed with ``--no-deps`` and only its linear-layer weights (``weights/v0.1/vgg.pth``) are
  read. With the same backbone weights it gives the same numbers as ``lpips.LPIPS(net="vgg")``.

The VGG16 backbone weights come from a local file the user names (torchvision's
``vgg16-397923af.pth`` layout, keys ``features.N.weight``). Without one, the backbone is random
(seeded, so runs are repeatable), a warning is logged once, and ``is_calibrated`` is False: such
numbers measure something, but they are not comparable with published LPIPS values
(:data:`UNCALIBRATED_NOTE`). Without the ``lpips`` package the linear weights are random too.

Inputs are float pixels in [-1, 1], ``(B, 3, H, W)`` or ``(B, 3, T, H, W)`` (frames are scored
one by one and averaged); the output is one distance per sample, shape ``(B,)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn

__all__ = ["UNCALIBRATED_NOTE", "VGG16LPIPS", "build_lpips", "lpips_lin_weights_path"]

logger = logging.getLogger(__name__)

UNCALIBRATED_NOTE = "random VGG backbone: not comparable to published LPIPS"

# torchvision's VGG16 `features` configuration ("D"); "M" is a 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
_VGG16_CFG += (512, 512, 512, "M", 512, 512, 512, "M")
# Taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (slice ends into `features`).
_SLICE_ENDS = (4, 9, 16, 23, 30)
_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def lpips_lin_weights_path(net: str = "vgg") -> Path | None:
    """Path of the linear-layer weights shipped in the ``lpips`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / "v0.1" / f"{net}.pth"
        if path.is_file():
            return path
    return None


def _make_vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(item)
    return nn.Sequential(*layers)


def _normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class VGG16LPIPS(nn.Module):
    """LPIPS-VGG (v0.1) without torchvision. Frozen: always in eval mode, no parameter needs a grad.

    Gradients still flow to the *inputs*, so it works as a perceptual loss.

    Attributes:
        is_calibrated: True only when both the backbone and the linear weights are the real ones.
        backbone_loaded, lin_loaded: which of the two were loaded from files.
    """

    def __init__(self, backbone_weights: str | Path | None = None, seed: int = 0) -> None:
        super().__init__()
        # Build the random parts under a forked RNG so the caller's global RNG stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = _make_vgg16_features()
            for m in self.features.modules():
                if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
            self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS)
            for lin in self.lins:  # non-negative, like the calibrated weights, so distances stay >= 0
                nn.init.uniform_(lin.weight, 0.0, 2.0 / lin.in_channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.backbone_loaded = False
        self.lin_loaded = False
        if backbone_weights is not None:
            self.load_backbone(backbone_weights)
        else:
            _warn_once(
                "backbone",
                f"LPIPS: no VGG16 backbone weights given, using a seeded random backbone ({UNCALIBRATED_NOTE}).",
            )
        lin_path = lpips_lin_weights_path("vgg")
        if lin_path is not None:
            self.load_lin(lin_path)
        else:
            _warn_once(
                "lin",
                "LPIPS: the lpips package is not installed (pip install --no-deps lpips); linear weights are random.",
            )
        self.requires_grad_(False)
        self.eval()

    @property
    def is_calibrated(self) -> bool:
        return self.backbone_loaded and self.lin_loaded

    def load_backbone(self, path: str | Path) -> None:
        """Load torchvision-format VGG16 weights (``features.N.weight/bias``; classifier keys are ignored)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise ValueError(
                f"{path}: no 'features.N.*' keys; expected torchvision's vgg16 state dict layout."
            )
        # The file may hold more layers than LPIPS taps (none after index 29 exist in VGG16 `features`).
        missing, unexpected = self.features.load_state_dict(features, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not a VGG16 `features` state dict (missing {missing}, unexpected {unexpected})."
            )
        self.backbone_loaded = True

    def load_lin(self, path: str | Path) -> None:
        """Load the lpips package's ``lin{i}.model.1.weight`` tensors."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(state[f"lin{i}.model.1.weight"])
        self.lin_loaded = True

    def train(self, mode: bool = True) -> VGG16LPIPS:  # a frozen module stays in eval mode
        return super().train(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, start = [], 0
        for end in _SLICE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            taps.append(x)
            start = end
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per sample, ``(B,)``, for pixels in [-1, 1]."""
        return _per_sample(self._distance_4d, x, y)

    def _distance_4d(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        feats = self._taps((torch.cat([x, y]) - self.shift) / self.scale)  # one pass for both inputs
        total = x.new_zeros(n)
        for lin, f in zip(self.lins, feats):
            fx, fy = _normalize_channels(f[:n]), _normalize_channels(f[n:])
            total = total + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return total


def _per_sample(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Apply a 4D distance to images or to every frame of videos; return ``(B,)``."""
    if x.shape != y.shape:
        raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.dim() == 4:
        return fn(x, y).reshape(x.shape[0])
    if x.dim() == 5:
        b, c, t, h, w = x.shape
        flat = lambda v: v.transpose(1, 2).reshape(b * t, c, h, w)  # noqa: E731 - (B*T, 3, H, W)
        return fn(flat(x), flat(y)).reshape(b, t).mean(dim=1)
    raise ValueError(f"LPIPS expects (B, 3, H, W) or (B, 3, T, H, W) pixels, got shape {tuple(x.shape)}.")


class _PackageLPIPS(nn.Module):
    """Adapter giving ``lpips.LPIPS`` the same interface (``(B,)`` output, 5D input, ``is_calibrated``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.requires_grad_(False).eval()
        self.is_calibrated = True

    def train(self, mode: bool = True) -> _PackageLPIPS:
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _per_sample(lambda a, b: self.net(a, b).flatten(), x, y)


def _try_package_lpips() -> nn.Module | None:
    """``lpips.LPIPS(net="vgg")`` if lpips, torchvision and the ImageNet weights are all usable, else None."""
    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        return None
    try:
        importlib.import_module("torchvision")
        lpips = importlib.import_module("lpips")
        return _PackageLPIPS(lpips.LPIPS(net="vgg", verbose=False))
    except Exception as err:  # broken torchvision build, or no network for the VGG download
        logger.info(
            "lpips package unusable (%s: %s); using the torchvision-free VGG16 LPIPS.",
            type(err).__name__,
            err,
        )
        return None


def build_lpips(backbone_weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """Build a frozen LPIPS-VGG module: ``module(x, y) -> (B,)`` for pixels in [-1, 1].

    Args:
        backbone_weights: a local torchvision ``vgg16`` state dict. When given, the torchvision-free
            module is used with it (identical numbers to the package). When None, the ``lpips``
            package is tried first; failing that, the backbone is random and ``is_calibrated`` False.
        seed: seed of the random backbone / linear weights when they are not loaded.
    """
    if backbone_weights is None:
        package = _try_package_lpips()
        if package is not None:
            return package
    return VGG16LPIPS(backbone_weights=backbone_weights, seed=seed)
