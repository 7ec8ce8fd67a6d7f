"""scripts/twemoji_grid.py: the Twemoji text-to-image grid (real emoji beside generations) and its record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from script_loader import load_script

from unified_grn import GRNConfig, GRNForConditionalGeneration


def _script():
    return load_script("twemoji_grid")


def _emoji_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    names = {
        "train": ["grinning face", "red apple", "man: light skin tone", "rocket"],
        "test": ["cat face", "tulip"],
    }
    for split, texts in names.items():
        (root / split).mkdir(parents=True)
        rows = []
        for i, text in enumerate(texts):
            pixels = np.full((64, 64, 3), 255, np.uint8)
            pixels[16:48, 16:48] = rng.integers(0, 200, 3)
            Image.fromarray(pixels).save(root / split / f"{i:06d}.png")
            rows.append(json.dumps({"file_name": f"{i:06d}.png", "text": text, "label": 0}))
        (root / split / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


def test_grid_has_a_row_per_name_with_the_real_emoji_and_a_record(tmp_path):
    model = GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny"))
    model.save_pretrained(tmp_path / "model")
    data, out = _emoji_folder(tmp_path / "emoji"), tmp_path / "grid.png"
    args = ["--model", str(tmp_path / "model"), "--data", str(data), "--out", str(out)]
    _script().main([*args, "--rows-per-split", "2", "--samples", "2", "--num-steps", "2"])
    script = _script()
    grid = Image.open(out)
    assert grid.size == (
        script.LABEL_W + 3 * (script.CELL + script.PAD) + script.PAD,
        script.PAD + 18 + 4 * 68,
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["split"] for r in record["rows"]] == ["train", "train", "test", "test"]
    assert not any("skin tone" in r["text"] for r in record["rows"])  # one row per base emoji
    assert {r["text"] for r in record["rows"][2:]} == {"cat face", "tulip"}
    assert set(record["mean_colour_distance"]) == {"train", "test"}
    assert "mean_colour_distance_shuffled_names" in record and record["settings"]["samples"] == 2
    real = np.asarray(Image.open(data / "test" / "000000.png").convert("RGB"))
    cell = np.asarray(grid.convert("RGB"))[script.PAD + 18 + 2 * 68 :][
        :64, script.LABEL_W : script.LABEL_W + 64
    ]
    assert np.array_equal(cell, real) or np.array_equal(
        cell, np.asarray(Image.open(data / "test" / "000001.png").convert("RGB"))
    )


def test_colour_distance_is_zero_for_the_same_emoji_and_maximal_for_a_blank_image():
    script = _script()
    emoji = np.full((64, 64, 3), 255, np.uint8)
    emoji[20:40, 20:40] = (200, 30, 30)
    assert script.colour_distance(emoji, emoji) == 0.0
    other = emoji.copy()
    other[20:40, 20:40] = (30, 30, 200)
    assert script.colour_distance(other, emoji) == pytest.approx(np.sqrt(2) * 170, rel=1e-6)
    assert script.colour_distance(np.full_like(emoji, 255), emoji) == pytest.approx(441.7)


def test_a_missing_data_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make-data-real twemoji"):
        _script().read_split(tmp_path / "nope", "train")
