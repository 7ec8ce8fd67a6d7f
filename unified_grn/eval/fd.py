"""FD_C: the Fréchet distance in the features of a Fashion-MNIST classifier trained here.

No Inception (or any ImageNet) weights can be had offline, so FID cannot be computed honestly on
these machines (``shared/research/data_eval_offline.md`` Sec. 3). Instead a small CNN ``C`` is
trained on Fashion-MNIST train with a fixed seed, and generated images are compared with real
ones by the Fréchet distance between Gaussians fitted to C's 128-d penultimate features
(Heusel et al. 2017's formula, another feature space): **FD_C, never "FID"**. It is a statistic
that shrinks with the number of samples N, so it is only readable next to references at the
same N: :func:`fd_c_references` gives real-vs-real (train vs test), additive noise, blur, mode
collapse and half the classes missing.

- :class:`FashionClassifier`: 3 conv blocks (16, 32, 64 channels, BatchNorm, GELU, max-pool)
  -> 128-d GELU feature -> 10 logits; ~0.24M parameters; input ``(N, 1, 28, 28)`` in [-1, 1].
- :func:`train_fmnist_classifier`: seeded AdamW + cosine schedule, one torch thread by default;
  1 epoch of the 60k train set is about 1 min on one contended CPU core.
- :func:`save_classifier` / :func:`load_classifier`: one safetensors file; its metadata holds
  the architecture, seed, epochs and measured test accuracy.
- :func:`frechet_distance` (features) / :func:`frechet_distance_from_stats` (means,
  covariances), :func:`fd_c`, :func:`classifier_accuracy`.

Images are uint8 ``(N, 28, 28)`` (or ``(N, H, W[, C])``: channels averaged, larger canvases such
as the 32x32 padded set centre-cropped to 28), or float tensors ``(N, 1, 28, 28)`` in [-1, 1].

    python -m unified_grn.eval.fd --epochs 2 --n 2000   # train (or load) C, print the references
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FashionClassifier",
    "classifier_accuracy",
    "default_classifier_path",
    "extract_features",
    "fd_c",
    "fd_c_references",
    "frechet_distance",
    "frechet_distance_from_stats",
    "get_fmnist_classifier",
    "load_classifier",
    "prepare_images",
    "save_classifier",
    "train_fmnist_classifier",
]

logger = logging.getLogger(__name__)


class FashionClassifier(nn.Module):
    """Small CNN: ``(N, 1, 28, 28)`` in [-1, 1] -> 10 logits; :meth:`features` is the 128-d FD_C space."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), feature_dim: int = 128) -> None:
        super().__init__()
        self.channels, self.feature_dim = tuple(channels), feature_dim
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:  # 28 -> 14 -> 7 -> 3
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.GELU(), nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * 3 * 3, feature_dim)
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 28, 28)`` -> ``(N, feature_dim)`` penultimate GELU features."""
        return F.gelu(self.fc(self.conv(x).flatten(1)))  # (N, C * 3 * 3) -> (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def prepare_images(images: np.ndarray | torch.Tensor, size: int = 28) -> torch.Tensor:
    """uint8 ``(N, H, W)`` / ``(N, H, W, C)`` (or a float ``(N, 1, H, W)`` tensor in [-1, 1]) ->
    float ``(N, 1, size, size)`` in [-1, 1]: channels averaged, larger canvases centre-cropped."""
    if isinstance(images, torch.Tensor):
        x = images.float()
    else:
        arr = np.asarray(images)
        if arr.ndim == 4:
            arr = arr.astype(np.float32).mean(-1)  # (N, H, W, C) -> (N, H, W)
        if arr.ndim != 3:
            raise ValueError(f"expected (N, H, W) or (N, H, W, C) images, got shape {arr.shape}")
        x = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)[:, None]  # (N, 1, H, W)
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"images are {h}x{w}, smaller than the classifier's {size}x{size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


def _batches(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(batch_size)])


@torch.no_grad()
def extract_features(
    images: np.ndarray | torch.Tensor, classifier: FashionClassifier, batch_size: int = 500
) -> np.ndarray:
    """C's ``(N, 128)`` features (float64) of the images, in eval mode."""
    classifier.eval()
    return _batches(prepare_images(images), classifier.features, batch_size).double().numpy()


@torch.no_grad()
def classifier_accuracy(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    classifier: FashionClassifier,
    batch_size: int = 500,
) -> float:
    """Share of images C assigns to their label (for generated images: the conditioning class)."""
    classifier.eval()
    logits = _batches(prepare_images(images), classifier, batch_size)
    return float((logits.argmax(1).numpy() == np.asarray(labels)).mean())


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    ``tr (S1 S2)^(1/2)`` is computed as the trace of ``(S1^(1/2) S2 S1^(1/2))^(1/2)``, a symmetric
    PSD matrix with the same eigenvalues, through ``eigh`` (stable, no complex parts, no scipy).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(
            f"shape mismatch: means {mu1.shape} / {mu2.shape}, covariances {s1.shape} / {s2.shape}"
        )
    root1 = _sqrtm_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, D)`` feature sets (unbiased covariances)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected two (N >= 2, D) feature sets, got {a.shape} and {b.shape}")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def fd_c(
    images_a: np.ndarray | torch.Tensor, images_b: np.ndarray | torch.Tensor, classifier: FashionClassifier
) -> float:
    """FD_C: the Fréchet distance between the two image sets in classifier C's features. Report N."""
    return frechet_distance(extract_features(images_a, classifier), extract_features(images_b, classifier))


# ----------------------------------------------------------------------------- training and storage


def train_fmnist_classifier(
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    limit: int | None = None,
    threads: int | None = 1,
    path: str | Path | None = None,
) -> tuple[FashionClassifier, dict]:
    """Train C on (the first ``limit`` images of) Fashion-MNIST train; evaluate on the 10k test set.

    Args:
        threads: ``torch.set_num_threads`` for the run (restored afterwards); None leaves it.
        path: also save the classifier there (:func:`save_classifier`).

    Returns:
        The classifier (eval mode) and ``info`` (seed, epochs, limit, steps, train time, test accuracy).
    """
    from unified_grn.data.real import load_fashion_mnist

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        x, y = load_fashion_mnist("train", limit)
        x_test, y_test = load_fashion_mnist("test")
        torch.manual_seed(seed)
        model = FashionClassifier()
        data, labels = prepare_images(x), torch.from_numpy(y)
        steps = epochs * math.ceil(len(data) / batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(data), generator=gen).split(batch_size):
                loss = F.cross_entropy(model(data[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        train_s = time.perf_counter() - start
        accuracy = classifier_accuracy(x_test, y_test, model)
    finally:
        torch.set_num_threads(old_threads)
    info = dict(seed=seed, epochs=epochs, limit=limit, steps=steps, batch_size=batch_size, lr=lr)
    info.update(
        train_s=round(train_s, 1), test_accuracy=accuracy, params=sum(p.numel() for p in model.parameters())
    )
    logger.info(
        "Fashion-MNIST classifier: test accuracy %.4f after %d steps (%.0f s)", accuracy, steps, train_s
    )
    if path is not None:
        save_classifier(model, path, info)
    return model.eval(), info


def save_classifier(model: FashionClassifier, path: str | Path, info: dict | None = None) -> Path:
    """One safetensors file; the metadata holds ``channels``, ``feature_dim`` and ``info`` (JSON)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"channels": json.dumps(list(model.channels)), "feature_dim": str(model.feature_dim)}
    meta["info"] = json.dumps(info or {})
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_classifier(path: str | Path) -> tuple[FashionClassifier, dict]:
    """The classifier saved by :func:`save_classifier` (strict load, eval mode) and its ``info``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    model = FashionClassifier(tuple(json.loads(meta["channels"])), int(meta["feature_dim"]))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), json.loads(meta.get("info", "{}"))


def default_classifier_path(seed: int = 0, epochs: int = 2) -> Path:
    from unified_grn.data.real import cache_dir

    return cache_dir() / "fd_c" / f"fmnist_cnn_seed{seed}_ep{epochs}.safetensors"


def get_fmnist_classifier(
    path: str | Path | None = None, seed: int = 0, epochs: int = 2
) -> tuple[FashionClassifier, dict]:
    """Load C from ``path`` (default: :func:`default_classifier_path`), training and saving it if absent."""
    path = Path(path) if path is not None else default_classifier_path(seed, epochs)
    if path.is_file():
        return load_classifier(path)
    logger.info("no classifier at %s: training one (%d epochs, seed %d)", path, epochs, seed)
    return train_fmnist_classifier(epochs=epochs, seed=seed, path=path)


# ----------------------------------------------------------------------------- references


def _box_blur(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images.astype(np.float32))[:, None]  # (N, 1, H, W)
    y = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return y[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def fd_c_references(classifier: FashionClassifier, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """FD_C of reference sets against ``n`` seeded Fashion-MNIST *test* images, all at the same ``n``.

    ``real train vs test`` is the floor a perfect generator would reach at this N; the others
    corrupt the same ``n`` train images: Gaussian noise sigma 0.1 / 0.2 / 0.4 (on the [-1, 1]
    scale), a 3x3 box blur, mode collapse (one image per class, repeated) and only 5 classes
    (with a small ``n`` that misses classes: the classes drawn, and the first half of them).
    """
    from unified_grn.data.real import load_fashion_mnist

    rng = np.random.default_rng(seed)
    x_test, _ = load_fashion_mnist("test")
    x_train, y_train = load_fashion_mnist("train")
    ref = extract_features(x_test[rng.choice(len(x_test), n, replace=False)], classifier)
    pick = rng.choice(len(x_train), n, replace=False)
    real, labels = x_train[pick], y_train[pick]
    sets: dict[str, np.ndarray] = {"real train vs test (floor)": real}
    for sigma in (0.1, 0.2, 0.4):
        noisy = real.astype(np.float64) + rng.normal(0.0, sigma * 127.5, real.shape)
        sets[f"noise sigma {sigma}"] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    sets["3x3 box blur"] = _box_blur(real)
    present = np.unique(labels)  # all 10 at the usual n; a small n may miss some
    firsts = np.array([np.flatnonzero(labels == c)[0] for c in present])
    sets["collapse: 1 image per class"] = real[np.resize(firsts, n)]
    half = np.flatnonzero(np.isin(labels, present[: max(1, len(present) // 2)]))
    sets["only 5 of 10 classes"] = real[np.resize(half, n)]
    return {name: frechet_distance(extract_features(imgs, classifier), ref) for name, imgs in sets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train (or load) the FD_C classifier and print FD_C references."
    )
    parser.add_argument("--path", type=Path, default=None, help="classifier file (default: in the cache)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000, help="samples per set for the references")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    classifier, info = get_fmnist_classifier(args.path, args.seed, args.epochs)
    logger.info("classifier: %s", json.dumps(info))
    for name, value in fd_c_references(classifier, args.n, args.seed).items():
        logger.info("FD_C (N=%d) %-30s %8.2f", args.n, name, value)


if __name__ == "__main__":
    main()
