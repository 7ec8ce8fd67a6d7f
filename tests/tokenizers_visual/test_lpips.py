"""LPIPS (Zhang et al., 2018): the torchvision-free VGG16 module and its weight loading."""

from __future__ import annotations

import logging

import pytest
import torch

from tokenizers_visual import lpips as tv_lpips
from tokenizers_visual.lpips import UNCALIBRATED_NOTE, VGG16LPIPS, build_lpips, lpips_lin_weights_path


@pytest.fixture(scope="module")
def module() -> VGG16LPIPS:
    return VGG16LPIPS(seed=0)


def _pair(seed: int = 0, shape=(2, 3, 32, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def test_fallback_runs_nonnegative_and_zero_for_identical(module):
    x = _pair(0)
    d = module(x, _pair(1))
    assert d.shape == (2,) and torch.isfinite(d).all() and (d >= 0).all()
    assert torch.allclose(module(x, x), torch.zeros(2), atol=1e-6)


def test_grows_with_distortion_for_a_fixed_backbone(module):
    x = _pair(0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    dists = [module(x, (x + s * noise).clamp(-1, 1)).mean().item() for s in (0.02, 0.1, 0.5)]
    assert dists[0] < dists[1] < dists[2]


def test_video_input_is_mean_over_frames(module):
    x, y = _pair(0, (1, 3, 2, 32, 32)), _pair(1, (1, 3, 2, 32, 32))
    per_frame = torch.stack([module(x[:, :, t], y[:, :, t]) for t in range(2)], dim=1).mean(dim=1)
    assert torch.allclose(module(x, y), per_frame, atol=1e-6)


def test_frozen_eval_and_gradient_reaches_inputs(module):
    module.train()
    assert not module.training
    assert all(not p.requires_grad for p in module.parameters())
    x = _pair(0).requires_grad_(True)
    module(x, _pair(1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_backbone_is_seeded_and_flagged(module):
    assert not module.is_calibrated and "not comparable" in UNCALIBRATED_NOTE
    again = VGG16LPIPS(seed=0)
    assert torch.equal(again.features[0].weight, module.features[0].weight)


def test_random_backbone_warns_once(caplog):
    tv_lpips._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="tokenizers_visual.lpips"):
        VGG16LPIPS()
        VGG16LPIPS()
    assert sum("random backbone" in r.message for r in caplog.records) == 1


def test_building_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    VGG16LPIPS(seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_loads_lin_weights_from_the_lpips_package(module):
    path = lpips_lin_weights_path("vgg")
    if path is None:
        pytest.skip(
            "the lpips package is not installed (pip install --no-deps lpips), so there are no lin weights"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert module.lin_loaded
    for i, lin in enumerate(module.lins):
        assert torch.equal(lin.weight, state[f"lin{i}.model.1.weight"])


def test_loads_a_user_backbone_file(tmp_path):
    src = VGG16LPIPS(seed=11)
    state = {f"features.{k}": v.clone() for k, v in src.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files also hold the classifier
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    loaded = build_lpips(backbone_weights=str(path))
    assert loaded.backbone_loaded
    assert loaded.is_calibrated == loaded.lin_loaded
    for k, v in src.features.state_dict().items():
        assert torch.equal(loaded.features.state_dict()[k], v)


def test_rejects_a_file_without_vgg_features(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="features"):
        VGG16LPIPS(backbone_weights=path)


def test_matches_the_lpips_package_given_the_same_backbone(monkeypatch, module):
    """The torchvision-free module equals lpips.LPIPS(net="vgg") with the same VGG16 weights.

    lpips imports torchvision (which cannot coexist with a CPU torch here) and scipy only to build
    its backbone and for its trainer; both are stubbed so the package's own LPIPS head (scaling,
    channel normalisation, lin layers, spatial mean) runs on our VGG16 `features` stack.
    """
    import copy
    import importlib
    import sys
    import types

    if lpips_lin_weights_path("vgg") is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips)")
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(
        vgg16=lambda **_: types.SimpleNamespace(features=copy.deepcopy(module.features))
    )
    scipy = types.ModuleType("scipy")
    scipy.ndimage = types.SimpleNamespace(zoom=None)
    for name, stub in {
        "torchvision": tv,
        "torchvision.models": tv.models,
        "scipy": scipy,
        "scipy.ndimage": scipy.ndimage,
    }.items():
        monkeypatch.setitem(sys.modules, name, stub)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        lpips = importlib.import_module("lpips")
        reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    finally:
        for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
            del sys.modules[name]
    x, y = _pair(0), _pair(1)
    with torch.no_grad():
        expected = reference(x, y).flatten()
    assert torch.allclose(module(x, y), expected, rtol=1e-5, atol=1e-6)
