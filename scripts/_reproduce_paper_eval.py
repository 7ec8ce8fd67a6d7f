"""Sampling and scoring for ``scripts/reproduce_paper.py``: one trained model, many decoding settings.

A *setting* is a JSON-able dict of sampler fields (CFG scale and interval, temperature, schedule,
selection, refine mode, steps, Eq. 9's ``k`` / ``b``). :func:`sample` draws ``n`` class-to-image
samples (labels ``i % classes``, one seed per sample) and :func:`score` measures them:

- shapes: the C2I checker's accuracy (``unified_grn.eval.c2i``); real test images score the same
  way for reference;
- Fashion-MNIST: FD_C against ``n`` seeded test images in the features of the classifier of
  ``unified_grn.eval.fd`` (never "FID"), with the real-train-vs-test FD_C at the same ``n`` as the
  reference, and the classifier's accuracy on the conditioning class.

:func:`tune` is the grid search the paper ran for its tuned rows (CFG x interval x temperature),
on its own seeds and a smaller ``n``; :func:`fit_entropy` sets Eq. 9's ``b`` so the mean step
count is 80% of ``T_max`` (the paper: ``k E(H) + b = 40`` of 50); :func:`histogram_png` draws
Fig. 9 with PIL (matplotlib is not installed here).
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from unified_grn.refinement_config import RefinementConfig
from unified_grn.schedules import fit_entropy_schedule

__all__ = ["base_setting", "fit_entropy", "histogram_png", "reference", "sample", "score", "tune"]

logger = logging.getLogger("reproduce_paper")
EVAL_SEED, TUNE_SEED = 10_000, 1_000_000


def base_setting(profile, guidance_scale=2.4, interval=(0.44, 1.0), temperature=1.23) -> dict:
    """The paper's GRN_bit-B decoding (Table 7 Refine) with this profile's step counts."""
    return dict(
        guidance_scale=guidance_scale, guidance_interval=list(interval), temperature=temperature,
        schedule="cosine", selection="random", refine_mode="refine",
        num_steps=profile.num_steps, min_steps=profile.min_steps, entropy_k=0.0, entropy_b=0.0,
    )  # fmt: skip


def refinement_config(setting: dict) -> RefinementConfig:
    s = dict(setting)
    s["guidance_interval"] = tuple(s["guidance_interval"])
    return RefinementConfig(**s)


@torch.no_grad()
def sample(model, setting: dict, n: int, num_classes: int, seed0: int, chunk: int) -> dict:
    """``n`` samples at ``setting``: uint8 images ``(n, H, W, 3)``, labels, steps used, entropies."""
    config = refinement_config(setting)
    images, steps, entropy = [], [], []
    labels = np.arange(n) % num_classes
    for start in range(0, n, chunk):
        idx = range(start, min(n, start + chunk))
        out = model.generate(
            class_label=[int(labels[i]) for i in idx], seed=[seed0 + i for i in idx],
            refinement_config=config, output_type="np", progress_bar=False,
        )  # fmt: skip
        images.append(out.images)
        steps.append(out.stats.steps_used.cpu().numpy())
        entropy.append(out.stats.decision_entropy.float().cpu().numpy())
    return dict(
        images=np.concatenate(images), labels=labels,
        steps=np.concatenate(steps), entropy=np.concatenate(entropy),
    )  # fmt: skip


@lru_cache(maxsize=1)
def _classifier():
    from unified_grn.eval.fd import get_fmnist_classifier

    return get_fmnist_classifier()


@lru_cache(maxsize=4)
def _fmnist_reference(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``n`` seeded Fashion-MNIST test images and of ``n`` seeded train images."""
    from unified_grn.data.real import load_fashion_mnist
    from unified_grn.eval.fd import extract_features

    classifier, _ = _classifier()
    rng = np.random.default_rng(0)
    x_test, _ = load_fashion_mnist("test")
    x_train, _ = load_fashion_mnist("train")
    test = x_test[rng.choice(len(x_test), n, replace=False)]
    train = x_train[rng.choice(len(x_train), n, replace=False)]
    return extract_features(test, classifier), extract_features(train, classifier)


def _shapes_real(n: int) -> list[tuple[np.ndarray, int]]:
    from unified_grn.data.shapes import sample_scene, split_rng
    from unified_grn.data.shapes_render import render_scene

    scenes = [sample_scene(split_rng(0, i, "test"), 32, kind="single") for i in range(n)]
    return [(np.asarray(render_scene(s)), s.label) for s in scenes]


def score(metric: str, images: np.ndarray, labels: np.ndarray) -> dict:
    """Checker accuracy (``accuracy``) or FD_C and classifier accuracy (``fd_c``) of the samples."""
    if metric == "accuracy":
        from unified_grn.eval.c2i import evaluate_c2i

        report = evaluate_c2i(zip(images, labels.tolist()))
        keys = ("accuracy", "color_accuracy", "shape_accuracy", "single_object")
        return {k: report.to_dict()[k] for k in keys}
    from unified_grn.eval.fd import classifier_accuracy, extract_features, frechet_distance

    classifier, _ = _classifier()
    test_feats, _ = _fmnist_reference(len(images))
    fd = frechet_distance(extract_features(images, classifier), test_feats)
    return {"fd_c": fd, "classifier_accuracy": classifier_accuracy(images, labels, classifier)}


def reference(metric: str, n: int) -> dict:
    """What real images score at the same ``n``: checker accuracy, or real train vs test FD_C."""
    if metric == "accuracy":
        from unified_grn.eval.c2i import evaluate_c2i

        return {"accuracy": evaluate_c2i(_shapes_real(n)).accuracy, "n": n}
    from unified_grn.eval.fd import fd_c_references, frechet_distance

    test_feats, train_feats = _fmnist_reference(n)
    classifier, _ = _classifier()
    # noise / blur / collapse / missing classes at the same n make an FD_C readable
    corrupted = {k: v for k, v in fd_c_references(classifier, n).items() if not k.startswith("real")}
    return {"fd_c": frechet_distance(train_feats, test_feats), "n": n, "references": corrupted}


def _loss(metric: str, result: dict) -> float:
    return -result["accuracy"] if metric == "accuracy" else result["fd_c"]


def tune(model, profile, metric: str, num_classes: int, base: dict, cache: Path) -> tuple[dict, list]:
    """Grid search over CFG x interval x temperature at ``n_tune``; best setting and every point.

    Points already in ``cache`` (a JSON list) are reused, so an interrupted search continues.
    """
    done = json.loads(cache.read_text()) if cache.exists() else []
    for scale, interval in profile.grid:
        for tau in profile.temperatures:
            setting = {
                **base,
                "guidance_scale": scale,
                "guidance_interval": list(interval),
                "temperature": tau,
            }
            if any(p["setting"] == setting for p in done):
                continue
            start = time.perf_counter()
            out = sample(model, setting, profile.n_tune, num_classes, TUNE_SEED, profile.chunk)
            result = score(metric, out["images"], out["labels"])
            done.append(dict(setting=setting, result=result, seconds=round(time.perf_counter() - start, 1)))
            logger.info("tune %s %s -> %s", scale, interval, json.dumps(result))
            cache.write_text(json.dumps(done, indent=1))
    best = min(done, key=lambda p: _loss(metric, p["result"]))
    return best["setting"], done


def fit_entropy(model, profile, num_classes: int, setting: dict, k: float | None) -> tuple[dict, dict]:
    """Eq. 9 ``b`` (and ``k`` when None) so the mean step count is ``0.8 T_max`` on the tuning seeds."""
    probe = {**setting, "schedule": "entropy", "entropy_k": 0.0, "entropy_b": float(profile.min_steps)}
    out = sample(model, probe, profile.n_tune, num_classes, TUNE_SEED, profile.chunk)
    target = 0.8 * profile.num_steps
    k_fit, b_fit = fit_entropy_schedule(
        torch.from_numpy(out["entropy"]), target, k=k,
        warmup_steps=5, min_steps=profile.min_steps, max_steps=profile.num_steps,
    )  # fmt: skip
    ent = out["entropy"]
    info = dict(target_mean_steps=target, entropy_mean=float(ent.mean()), entropy_std=float(ent.std()))
    info["entropy_p05_p95"] = [float(np.quantile(ent, 0.05)), float(np.quantile(ent, 0.95))]
    return {**setting, "schedule": "entropy", "entropy_k": k_fit, "entropy_b": b_fit}, info


def histogram_png(steps: np.ndarray, lo: int, hi: int, title: str, path: Path) -> Path:
    """Fig. 9: a bar per step count in ``[lo, hi]``, drawn with PIL (white background)."""
    counts = np.bincount(np.clip(steps.astype(int), lo, hi) - lo, minlength=hi - lo + 1)
    width, height, left, bottom, top = 640, 360, 60, 40, 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    plot_w, plot_h = width - left - 20, height - top - bottom
    bar = plot_w / len(counts)
    peak = max(int(counts.max()), 1)
    for i, c in enumerate(counts):
        x0 = left + i * bar
        y0 = top + plot_h * (1 - c / peak)
        draw.rectangle([x0 + 1, y0, x0 + bar - 1, top + plot_h], fill=(70, 110, 180))
    draw.line([left, top + plot_h, left + plot_w, top + plot_h], fill="black")
    draw.line([left, top, left, top + plot_h], fill="black")
    for i in range(0, len(counts), max(1, len(counts) // 6)):
        draw.text((left + i * bar, top + plot_h + 5), str(lo + i), fill="black")
    draw.text((left + plot_w - 120, top + plot_h + 22), "steps used", fill="black")
    draw.text((5, top - 12), f"samples (max {peak})", fill="black")
    draw.text((left, 8), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
