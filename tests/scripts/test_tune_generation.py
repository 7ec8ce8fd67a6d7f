"""scripts/tune_generation.py: a grid on held-out prompts, the best point saved as the model's defaults."""

from __future__ import annotations

import json
from pathlib import Path

from script_loader import load_script

from unified_grn import GRNConfig, GRNForConditionalGeneration
from unified_grn.configuration_grn import GRNGenerationConfig


def _script():
    return load_script("tune_generation")


def _save_tiny(folder: Path) -> None:
    GRNForConditionalGeneration(GRNConfig.from_preset("GRN-tiny")).save_pretrained(folder)


def test_grid_is_scored_and_the_best_point_is_saved(tmp_path):
    _save_tiny(tmp_path)
    args = [
        "--model",
        str(tmp_path),
        "--num-prompts",
        "2",
        "--num-steps",
        "2",
        "3",
        "--guidance-scale",
        "1.5",
    ]
    _script().main([*args, "--temperature", "0.7", "0.9", "--save"])
    table = json.loads((tmp_path / "tune_generation.json").read_text())
    points = {(r["num_steps"], r["temperature"]) for r in table["grid"]}
    assert points == {(2, 0.7), (2, 0.9), (3, 0.7), (3, 0.9)}
    best = table["best"]
    assert table["objective"] == "checks" and all(0.0 <= r["checks"] <= 1.0 for r in table["grid"])
    assert best["checks"] == max(r["checks"] for r in table["grid"])
    saved = GRNGenerationConfig.from_pretrained(tmp_path)
    assert (saved.num_steps, saved.guidance_scale, saved.temperature) == (
        best["num_steps"],
        best["guidance_scale"],
        best["temperature"],
    )


def test_overall_objective_ranks_by_the_overall_score(tmp_path):
    _save_tiny(tmp_path)
    args = [
        "--model",
        str(tmp_path),
        "--num-prompts",
        "2",
        "--num-steps",
        "2",
        "--guidance-scale",
        "1.5",
        "3.5",
    ]
    _script().main([*args, "--objective", "overall", "--out", str(tmp_path / "table.json")])
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["objective"] == "overall" and len(table["grid"]) == 4
    best = max(table["grid"], key=lambda r: (r["t2i"], r["checks"], -r["num_steps"]))
    assert table["best"] == best
