"""FD_C: Fréchet distance properties, the closed form for Gaussians, and the Fashion-MNIST classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unified_grn.data import real
from unified_grn.eval import fd

needs_fmnist = pytest.mark.skipif(
    real.find_fashion_mnist() is None, reason="Fashion-MNIST absent: run bash scripts/install_real_data.sh"
)


@pytest.fixture(scope="module")
def feats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(6, 6))
    return rng.normal(size=(500, 6)) @ mix, rng.normal(size=(400, 6)) @ mix * 1.3 + 0.5


def test_zero_symmetric_and_growing(feats):
    a, b = feats
    assert fd.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fd.frechet_distance(a, b) == pytest.approx(fd.frechet_distance(b, a), rel=1e-8)
    shifts = [fd.frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts)
    assert shifts[2] == pytest.approx(6 * 1.0**2, rel=1e-8)  # a pure shift adds |delta mu|^2 only
    with pytest.raises(ValueError):
        fd.frechet_distance(a, b[:, :3])


def test_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    d1, d2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(d1) - sqrt(d2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert fd.frechet_distance_from_stats(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected)
    # commuting covariances (same eigenvectors, rotated): the same formula on the eigenvalues
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    assert fd.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected)
    # general 1-d: (m1 - m2)^2 + (s1 - s2)^2 on standard deviations
    assert fd.frechet_distance_from_stats([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # samples of the Gaussians converge to the closed form
    x = mu1 + rng.normal(size=(200_000, 4)) * np.sqrt(d1)
    y = mu2 + rng.normal(size=(200_000, 4)) * np.sqrt(d2)
    assert fd.frechet_distance(x, y) == pytest.approx(expected, abs=0.03)


def test_classifier_shapes_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = fd.FashionClassifier().eval()
    images = (np.random.default_rng(0).random((3, 32, 32)) * 255).astype(np.uint8)  # padded canvas
    x = fd.prepare_images(images)
    assert x.shape == (3, 1, 28, 28) and -1 <= x.min() and x.max() <= 1
    assert fd.prepare_images(np.repeat(images[..., None], 3, -1)).allclose(x)  # RGB gray = gray
    assert fd.extract_features(images, model).shape == (3, 128)
    path = fd.save_classifier(model, tmp_path / "c.safetensors", {"seed": 0})
    loaded, info = fd.load_classifier(path)
    assert info == {"seed": 0}
    assert np.allclose(fd.extract_features(images, loaded), fd.extract_features(images, model))


@needs_fmnist
@pytest.mark.slow
def test_classifier_trains_quickly_and_fd_c_is_readable(tmp_path):
    model, info = fd.train_fmnist_classifier(epochs=1, limit=8000, seed=0, path=tmp_path / "c.safetensors")
    assert info["test_accuracy"] > 0.80 and (tmp_path / "c.safetensors").is_file()
    x, y = real.load_fashion_mnist("test", 1000)
    assert fd.classifier_accuracy(x, y, model) > 0.78
    assert fd.classifier_accuracy(x, (y + 1) % 10, model) < 0.1  # wrong labels score low
    refs = fd.fd_c_references(model, n=500, seed=0)
    floor = refs["real train vs test (floor)"]
    assert all(value > floor for value in refs.values() if value is not floor)
    for name in ("3x3 box blur", "collapse: 1 image per class", "only 5 of 10 classes", "noise sigma 0.4"):
        assert refs[name] > 4 * floor, (name, refs)
    assert refs["noise sigma 0.1"] < refs["noise sigma 0.2"] < refs["noise sigma 0.4"]
    small = fd.fd_c_references(model, n=8, seed=0)  # 8 draws cannot hold all 10 classes
    assert small.keys() == refs.keys() and all(np.isfinite(v) for v in small.values())
    xt, _ = real.load_fashion_mnist("train", 500)
    assert fd.fd_c(x[:500], xt, model) == pytest.approx(fd.fd_c(xt, x[:500], model), rel=1e-6)
